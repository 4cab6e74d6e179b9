package bench

import (
	"bytes"
	"fmt"
	"math"
	"testing"
)

func TestAppendKey(t *testing.T) {
	for _, n := range []int{0, 7, 123, 99999, 12345678, 123456789} {
		want := fmt.Sprintf("key:%08d", n)
		if got := string(AppendKey([]byte("x"), n)); got != "x"+want {
			t.Errorf("AppendKey(%d) = %q, want %q", n, got, "x"+want)
		}
	}
}

func TestGenerator(t *testing.T) {
	cfg := Config{Keys: 1000, Ratio: 0.3, ValueSize: 37}
	g1, g2 := newGenerator(cfg, 42, 3), newGenerator(cfg, 42, 3)
	other := newGenerator(cfg, 42, 4)
	if len(g1.value) != 37 {
		t.Fatalf("value size %d, want 37", len(g1.value))
	}
	if bytes.Equal(g1.value, other.value) {
		t.Fatalf("requesters 3 and 4 share a value")
	}
	const rounds = 2000
	b1, b2 := make([]Op, 10), make([]Op, 10)
	gets, seen := 0, map[string]bool{}
	for range rounds {
		g1.fill(b1)
		g2.fill(b2)
		for i := range b1 {
			op := b1[i]
			if op.Kind != b2[i].Kind || !bytes.Equal(op.Key, b2[i].Key) {
				t.Fatalf("same seed, different ops: %v %q vs %v %q", op.Kind, op.Key, b2[i].Kind, b2[i].Key)
			}
			var n int
			if _, err := fmt.Sscanf(string(op.Key), "key:%d", &n); err != nil || n < 0 || n >= 1000 || len(op.Key) != 12 {
				t.Fatalf("key %q out of key:00000000..key:00000999", op.Key)
			}
			seen[string(op.Key)] = true
			if op.Kind == Get {
				gets++
				if op.Value != nil {
					t.Fatalf("a get carries a value")
				}
			} else if !bytes.Equal(op.Value, g1.value) {
				t.Fatalf("a put carries %d bytes, want the requester's value", len(op.Value))
			}
		}
	}
	if frac := float64(gets) / (rounds * 10); math.Abs(frac-0.3) > 0.02 {
		t.Errorf("fraction of gets %.3f, want 0.3", frac)
	}
	if len(seen) < 990 {
		t.Errorf("only %d of 1000 keys drawn in %d ops", len(seen), rounds*10)
	}
}

func TestGeneratorExtremes(t *testing.T) {
	for _, ratio := range []float64{0, 1} {
		g := newGenerator(Config{Keys: 10, Ratio: ratio, ValueSize: 1}, 1, 0)
		b := make([]Op, 100)
		g.fill(b)
		for _, op := range b {
			if (op.Kind == Get) != (ratio == 1) {
				t.Fatalf("ratio %g produced a %s", ratio, op.Kind)
			}
		}
	}
}

func TestFillPuts(t *testing.T) {
	g := newGenerator(Config{Keys: 100, ValueSize: 4}, 1, 0)
	b := make([]Op, 3)
	b[1].Err, b[1].Done = fmt.Errorf("old"), true
	g.fillPuts(b, 98)
	for i, op := range b {
		if op.Kind != Put || string(op.Key) != fmt.Sprintf("key:%08d", 98+i) || op.Done || op.Err != nil {
			t.Fatalf("op %d = %+v", i, op)
		}
	}
}
