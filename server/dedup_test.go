package server

import (
	"math/rand/v2"
	"testing"
)

func TestDedupFloorPrunes(t *testing.T) {
	d := newDedup()
	for s := uint64(1); s <= 10; s++ {
		d.put(7, s, &outcome{done: true})
	}
	if o, stale := d.lookup(7, 5, 1); o == nil || stale {
		t.Fatal("record 5 must be remembered while the floor is 1")
	}
	if _, stale := d.lookup(7, 11, 6); stale {
		t.Fatal("seq 11 is above the floor")
	}
	if n := d.size(); n != 5 {
		t.Fatalf("%d records after floor 6, want 5 (6..10)", n)
	}
	if _, stale := d.lookup(7, 3, 6); !stale {
		t.Fatal("seq 3 is below the floor: a retry of it cannot happen")
	}
}

func TestDedupSnapshotRestore(t *testing.T) {
	a := newDedup()
	a.mu.Lock()
	a.put(7, 3, &outcome{done: true, status: 2, flags: 1, value: []byte("cur\x00")})
	a.put(7, 4, &outcome{}) // in flight: travels with its REPL frame
	a.put(9, 1, &outcome{done: true})
	a.mu.Unlock()
	b := newDedup()
	for _, c := range a.snapshot() {
		if err := b.restore(c); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	o, _ := b.lookup(7, 3, 1)
	if o == nil || !o.done || o.status != 2 || o.flags != 1 || string(o.value) != "cur\x00" {
		t.Fatalf("record (7,3) = %+v", o)
	}
	if o, _ := b.lookup(7, 4, 1); o != nil {
		t.Fatal("an unfinished record was copied")
	}
	if o, _ := b.lookup(9, 1, 1); o == nil || !o.done {
		t.Fatal("record (9,1) missing")
	}
}

// TestDedupModel checks the sorted records against a map under random
// operations.
func TestDedupModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	d := newDedup()
	model := map[uint64]*outcome{}
	floor := uint64(0)
	for i := 0; i < 20000; i++ {
		seq := floor + uint64(r.IntN(40))
		switch r.IntN(4) {
		case 0:
			o := &outcome{}
			d.put(1, seq, o)
			model[seq] = o
		case 1:
			if r.IntN(10) == 0 {
				floor += uint64(r.IntN(5))
			}
			o, stale := d.lookup(1, seq, floor)
			for s := range model {
				if s < floor {
					delete(model, s)
				}
			}
			if stale != (seq < floor) || (!stale && o != model[seq]) {
				t.Fatalf("step %d: lookup(%d) floor %d = %p stale %v, model %p", i, seq, floor, o, stale, model[seq])
			}
		case 2:
			d.forget(1, seq)
			delete(model, seq)
		case 3:
			o := &outcome{}
			d.record(1, seq, floor, o)
			for s := range model {
				if s < floor {
					delete(model, s)
				}
			}
			if seq >= floor {
				model[seq] = o
			}
		}
		if d.size() != len(model) {
			t.Fatalf("step %d: %d records, model %d", i, d.size(), len(model))
		}
	}
}
