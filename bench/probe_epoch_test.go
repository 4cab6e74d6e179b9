package bench

import "testing"

// TestProbeFailoversAcrossTerms: views are counted within the
// coordinators' Raft terms (an epoch is term<<32 | n), so a change of
// leader during a probe is not 2^32 failovers.
func TestProbeFailoversAcrossTerms(t *testing.T) {
	for _, tt := range []struct {
		before, after, want uint64
	}{
		{2<<32 | 1, 2<<32 | 1, 0},
		{2<<32 | 1, 2<<32 | 3, 2},
		{2<<32 | 5, 3<<32 | 1, 0}, // a new leader restamped the view
		{2<<32 | 5, 3<<32 | 2, 1},
	} {
		r := ProbeResult{EpochBefore: tt.before, EpochAfter: tt.after}
		if got := r.Failovers(); got != tt.want {
			t.Errorf("epoch %#x -> %#x: %d failovers, want %d", tt.before, tt.after, got, tt.want)
		}
	}
}
