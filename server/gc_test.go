package server

import (
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

// The floor is the lowest live heap less the tables of the window: a
// burst does not raise it, tables that grow are not in it, the rest that
// stays raises it once the window has passed. From a start the limit
// applies from the first sample (the tables were recovered before it; a
// client flooding a fresh server in its first seconds grew it by 67 MiB
// in CI's ci24e run); after a reset only once the samples span a window
// again.
func TestGCFloor(t *testing.T) {
	f := gcFloor{window: 3 * time.Second}
	t0 := time.Unix(0, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	steps := []struct {
		ms           int
		reset        bool
		live, tables uint64
		want         uint64
		ready        bool
	}{
		{ms: 0, live: 10 << 20, tables: 4 << 20, want: 6 << 20, ready: true},
		{ms: 250, live: 60 << 20, tables: 4 << 20, want: 6 << 20, ready: true},    // a burst
		{ms: 2500, live: 80 << 20, tables: 40 << 20, want: 6 << 20, ready: true},  // tables grow, burst goes on
		{ms: 3100, live: 70 << 20, tables: 40 << 20, want: 30 << 20, ready: true}, // the first sample left
		{ms: 6000, live: 70 << 20, tables: 40 << 20, want: 30 << 20, ready: true}, // the rest stays: the floor follows
		{ms: 6250, live: 50 << 20, tables: 45 << 20, want: 5 << 20, ready: true},
		{ms: 6500, reset: true},
		{ms: 6750, live: 50 << 20, tables: 45 << 20, want: 5 << 20},
		{ms: 9800, live: 50 << 20, tables: 45 << 20, want: 5 << 20, ready: true},
	}
	for _, s := range steps {
		if s.reset {
			f.reset()
			continue
		}
		got, ready := f.add(at(s.ms), s.live, s.tables)
		if got != s.want || ready != s.ready {
			t.Errorf("at %d ms, live %d MiB, tables %d MiB: floor %d MiB ready %v, want %d MiB %v",
				s.ms, s.live>>20, s.tables>>20, got>>20, ready, s.want>>20, s.ready)
		}
	}
}

// The limit leaves the tables and the floor their GOGC headroom plus the
// burst room, over the runtime's 3 % margin, plus the memory besides the
// heap. Clients' buffers take the burst room first and raise the limit
// only beyond it.
func TestGCLimit(t *testing.T) {
	if got, want := gcLimit(4<<20, 6<<20, 5<<20, 0), int64(5<<20+(20<<20+gcBurstRoom)*100/97); got != want {
		t.Errorf("small heap: limit %d MiB, want %d MiB", got>>20, want>>20)
	}
	if got, want := gcLimit(1<<30, 0, 8<<20, 0), int64(8<<20+(1<<30+(1<<30)/5+gcBurstRoom)*100/97); got != want {
		t.Errorf("large heap: limit %d MiB, want %d MiB", got>>20, want>>20)
	}
	if got, want := gcLimit(4<<20, 6<<20, 5<<20, gcBurstRoom/2), gcLimit(4<<20, 6<<20, 5<<20, 0); got != want {
		t.Errorf("clients holding half the burst room: limit %d MiB, want %d MiB (within the burst room)", got>>20, want>>20)
	}
	if got, want := gcLimit(4<<20, 6<<20, 5<<20, 110<<20), int64(5<<20+(20<<20+110<<20)*100/97); got != want {
		t.Errorf("clients holding 110 MiB: limit %d MiB, want %d MiB", got>>20, want>>20)
	}
}
