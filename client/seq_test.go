package client

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The floor is always the lowest seq not retired, however the seqs are
// retired (in any order, some long after others, twice), across the
// ring's growth, its return to the starting size, and with a ring whose
// largest size is reached (the oldest open seqs then wait in stuck).
func TestSeqsFloor(t *testing.T) {
	t.Run("ring", func(t *testing.T) { testSeqsFloor(t, newSeqs()) })
	t.Run("full", func(t *testing.T) {
		q := newSeqs()
		q.max = 256
		testSeqsFloor(t, q)
		if len(q.stuck) != 0 {
			t.Fatalf("%d seqs left in stuck after all were retired", len(q.stuck))
		}
	})
}

// The memory follows the seqs open, not those handed out since the
// oldest open one: one write stuck while a million others come and go.
func TestSeqsStuckWriteBoundsMemory(t *testing.T) {
	q := newSeqs()
	stuck := q.begin()
	for range 1_000_000 {
		q.end(q.begin())
	}
	if q.current() != stuck {
		t.Fatalf("floor %d, want the stuck seq %d", q.current(), stuck)
	}
	if len(q.done) > seqRingMax || len(q.stuck) != 1 {
		t.Fatalf("ring of %d flags, %d in stuck: want at most %d and 1", len(q.done), len(q.stuck), seqRingMax)
	}
	q.end(stuck)
	if q.current() != q.next {
		t.Fatalf("floor %d after the stuck seq ended, want %d", q.current(), q.next)
	}
}

func testSeqsFloor(t *testing.T, q *seqs) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
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
	grew, spilled := 0, 0
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
		spilled = max(spilled, len(q.stuck))
		if step%16 == 0 || len(open) < 8 {
			check(step)
		}
	}
	if grew <= min(seqRingKeep, q.max-1) {
		t.Fatalf("the ring grew to %d only", grew)
	}
	if q.max < seqRingKeep && spilled == 0 {
		t.Fatal("the full ring never moved an open seq to stuck")
	}
	for s := range open {
		q.end(s)
		delete(open, s)
	}
	check(-1)
	if q.max > seqRingKeep && len(q.done) != seqRing {
		t.Fatalf("ring of %d after everything was retired, want %d", len(q.done), seqRing)
	}
}
