package client

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The floor is always the lowest seq not retired, however the seqs are
// retired (in any order, some long after others, twice), across the
// ring's growth and its return to the starting size.
func TestSeqsFloor(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	q := newSeqs()
	open := map[uint64]bool{}
	var last uint64
	check := func(step int) {
		want := last + 1 // none open: the next one
		for s := range open {
			want = min(want, s)
		}
		if got := q.current(); got != want {
			t.Fatalf("step %d: floor %d, want %d (%d open)", step, got, want, len(open))
		}
	}
	grew := 0
	for step := range 60_000 {
		// Phases: mostly handing out (the ring grows past seqRingKeep),
		// then mostly retiring (it empties and shrinks).
		begin := rng.IntN(100) < 80
		if (step/10_000)%2 == 1 {
			begin = rng.IntN(100) < 20
		}
		if begin || len(open) == 0 {
			s := q.begin()
			if s != last+1 {
				t.Fatalf("step %d: seq %d after %d", step, s, last)
			}
			last = s
			open[s] = true
		} else {
			for s := range open { // some open seq
				q.end(s)
				delete(open, s)
				if rng.IntN(10) == 0 {
					q.end(s) // retired twice: no effect
				}
				break
			}
		}
		grew = max(grew, len(q.done))
		if step%16 == 0 || len(open) < 8 {
			check(step)
		}
	}
	if grew <= seqRingKeep {
		t.Fatalf("the ring grew to %d only", grew)
	}
	for s := range open {
		q.end(s)
		delete(open, s)
	}
	check(-1)
	if len(q.done) != seqRing {
		t.Fatalf("ring of %d after everything was retired, want %d", len(q.done), seqRing)
	}
}
