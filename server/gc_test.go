package server

import (
	"math"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	cases := []struct {
		live uint64
		want int
	}{
		{0, 100}, {16 << 20, 100}, {32 << 20, 100}, {48 << 20, 60}, {64 << 20, 20}, {1 << 30, 20},
	}
	for _, c := range cases {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("gcPercent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// The floor is the lowest live heap of the window: a burst does not raise
// it, data that stays does once the window has passed.
func TestGCFloor(t *testing.T) {
	f := gcFloor{window: 3 * time.Second}
	t0 := time.Unix(0, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	steps := []struct {
		ms   int
		live uint64
		want uint64
	}{
		{0, 10 << 20, 10 << 20},
		{250, 60 << 20, 10 << 20},  // a burst
		{2500, 80 << 20, 10 << 20}, // still within the window
		{3100, 70 << 20, 60 << 20}, // the first sample left it
		{6000, 70 << 20, 70 << 20}, // stays: the floor follows
	}
	for _, s := range steps {
		if got := f.add(at(s.ms), s.live); got != s.want {
			t.Errorf("at %d ms, live %d MiB: floor %d MiB, want %d MiB", s.ms, s.live>>20, got>>20, s.want>>20)
		}
	}
}

// The limit leaves the headroom GOGC gives the floor, plus the burst room;
// a re-seeding lifts it.
func TestGCLimit(t *testing.T) {
	if got, want := gcLimit(10<<20, 5<<20, false), int64(20<<20+5<<20+gcBurstRoom); got != want {
		t.Errorf("small heap: limit %d MiB, want %d MiB", got>>20, want>>20)
	}
	if got, want := gcLimit(1<<30, 8<<20, false), int64(1<<30+(1<<30)/5+8<<20+gcBurstRoom); got != want {
		t.Errorf("large heap: limit %d MiB, want %d MiB", got>>20, want>>20)
	}
	if got := gcLimit(10<<20, 5<<20, true); got != math.MaxInt64 {
		t.Errorf("while re-seeding: limit %d, want none", got)
	}
}
