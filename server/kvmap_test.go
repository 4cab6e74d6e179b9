package server

import (
	"fmt"
	"math/rand"
	"testing"
)

// TestKVMapAgainstMap drives kvmap and a Go map with the same random puts
// and removes over a small key space (long probe runs, wrap-around and
// backward shifts on every delete) and compares them after each step.
func TestKVMapAgainstMap(t *testing.T) {
	seed := rand.Int63()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	var m kvmap
	ref := map[string]string{}
	for step := 0; step < 20000; step++ {
		k := fmt.Sprintf("k%d", rng.Intn(300))
		h := hashKey([]byte(k))
		if rng.Intn(3) == 0 {
			_, had := ref[k]
			delete(ref, k)
			i, got := m.find([]byte(k), h)
			if got {
				m.removeAt(i)
			}
			if got != had {
				t.Fatalf("step %d: remove %q = %v, want %v", step, k, got, had)
			}
		} else {
			v := fmt.Sprintf("v%d", step)
			_, had := ref[k]
			ref[k] = v
			r := makeRec([]byte(k), []byte(v))
			r.setVersion(uint64(step))
			if isNew := m.put(r, h); isNew == had {
				t.Fatalf("step %d: put %q new=%v, had=%v", step, k, isNew, had)
			}
		}
		if m.n != len(ref) {
			t.Fatalf("step %d: %d entries, want %d", step, m.n, len(ref))
		}
		if step%97 == 0 {
			for k, v := range ref {
				r, ok := m.get([]byte(k), hashKey([]byte(k)))
				if !ok || string(r.value()) != v || r.key() != k {
					t.Fatalf("step %d: get %q = %q %v, want %q", step, k, r.value(), ok, v)
				}
			}
			seen := 0
			m.each(func(r rec) bool {
				if ref[r.key()] != string(r.value()) {
					t.Fatalf("step %d: each saw %q=%q, want %q", step, r.key(), r.value(), ref[r.key()])
				}
				seen++
				return true
			})
			if seen != len(ref) {
				t.Fatalf("step %d: each saw %d, want %d", step, seen, len(ref))
			}
		}
	}
}

func TestRecLayout(t *testing.T) {
	r := makeRec([]byte("key\x00"), []byte("a value"))
	r.setVersion(1<<40 + 7)
	if r.key() != "key\x00" || string(r.value()) != "a value" || r.version() != 1<<40+7 {
		t.Fatalf("rec: %q %q %d", r.key(), r.value(), r.version())
	}
	if got := recAt(r.ptr()); string(got) != string(r) {
		t.Fatal("recAt does not give the record back")
	}
	big := make([]byte, 64<<10) // the largest key
	big[0] = 'x'
	if b := makeRec(big, []byte("v")); len(b.key()) != len(big) || string(b.value()) != "v" {
		t.Fatalf("64 KiB key: key %d bytes, value %q", len(b.key()), b.value())
	}
	e := makeRec(nil, nil)
	if e.key() != "" || len(e.value()) != 0 {
		t.Fatalf("empty rec: %q %q", e.key(), e.value())
	}
}

func BenchmarkTableMerge(b *testing.B) {
	tb := newTable()
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("key:%08d", i)
	}
	val := make([]byte, 100)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tb.merge(keys[i&(1<<16-1)], val, uint64(i+1), false, false)
	}
}

// BenchmarkTableGetRandom reads random keys: with many keys it measures
// memory latency, the cost of a look-up in a loaded server.
func BenchmarkTableGetRandom(b *testing.B) {
	for _, n := range []int{33_000, 333_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tb := newTable()
			keys := make([][]byte, n)
			val := make([]byte, 100)
			for i := range keys {
				keys[i] = []byte(fmt.Sprintf("key:%012d", rand.Int63n(1e12)))
				tb.merge(string(keys[i]), val, 1, false, false)
			}
			idx := make([]int, 1<<16)
			for i := range idx {
				idx[i] = rand.Intn(n)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tb.get(keys[idx[i&(1<<16-1)]])
			}
		})
	}
}
