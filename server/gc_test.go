package server

import "testing"

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
