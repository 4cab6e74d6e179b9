package server

import (
	"math/rand/v2"
	"testing"
)

func TestDedupFloorPrunes(t *testing.T) {
	d := newDedup()
	for s := uint64(1); s <= 10; s++ {
		d.record(7, s, 0, doneOutcome(0, 0, nil))
	}
	if o, cl := d.claim(7, 5, 1); o == nil || cl != claimDone {
		t.Fatal("record 5 must be remembered while the floor is 1")
	}
	if _, cl := d.claim(7, 11, 6); cl != claimNew {
		t.Fatal("seq 11 is above the floor and new")
	}
	if n := d.size(); n != 6 {
		t.Fatalf("%d records after floor 6, want 6 (6..11)", n)
	}
	if _, cl := d.claim(7, 11, 6); cl != claimInFlight {
		t.Fatal("seq 11 was claimed: it is in flight")
	}
	if _, cl := d.claim(7, 3, 6); cl != claimStale {
		t.Fatal("seq 3 is below the floor: a retry of it cannot happen")
	}
}

func TestDedupSnapshotRestore(t *testing.T) {
	a := newDedup()
	a.record(7, 3, 0, doneOutcome(2, 1, []byte("cur\x00")))
	a.claim(7, 4, 0) // in flight: travels with its REPL frame
	a.record(9, 1, 0, doneOutcome(0, 0, nil))
	b := newDedup()
	for _, c := range a.snapshot() {
		if err := b.restore(c); err != nil {
			t.Fatal(err)
		}
	}
	o, cl := b.claim(7, 3, 1)
	if cl != claimDone || o.status != 2 || o.flags != 1 || string(o.value) != "cur\x00" {
		t.Fatalf("record (7,3) = %+v, %v", o, cl)
	}
	if _, cl := b.claim(7, 4, 1); cl != claimNew {
		t.Fatal("an unfinished record was copied")
	}
	if _, cl := b.claim(9, 1, 1); cl != claimDone {
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
	prune := func() {
		for s := range model {
			if s < floor {
				delete(model, s)
			}
		}
	}
	for i := 0; i < 20000; i++ {
		seq := floor + uint64(r.IntN(40))
		switch r.IntN(3) {
		case 0:
			if r.IntN(10) == 0 {
				floor += uint64(r.IntN(5))
			}
			o, cl := d.claim(1, seq, floor)
			prune()
			want := model[seq]
			switch {
			case seq < floor:
				if cl != claimStale {
					t.Fatalf("step %d: claim(%d) floor %d = %v, want stale", i, seq, floor, cl)
				}
			case want == nil:
				if cl != claimNew || o == nil {
					t.Fatalf("step %d: claim(%d) floor %d = %v, want new", i, seq, floor, cl)
				}
				model[seq] = o
			default:
				if o != want || (cl == claimDone) != want.done.Load() {
					t.Fatalf("step %d: claim(%d) floor %d = %p %v, model %p", i, seq, floor, o, cl, want)
				}
			}
		case 1:
			d.forget(1, seq)
			delete(model, seq)
		case 2:
			o := doneOutcome(0, 0, nil)
			d.record(1, seq, floor, o)
			prune()
			if seq >= floor {
				model[seq] = o
			}
		}
		if d.size() != len(model) {
			t.Fatalf("step %d: %d records, model %d", i, d.size(), len(model))
		}
	}
}
