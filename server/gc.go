package server

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's headroom (GOGC) follows the live heap: a small heap is
// cheap to let double between collections (fewer collections, more
// throughput), while a server holding many keys keeps its resident set
// near its data, where each percent of headroom costs about a byte per
// stored entry.
const (
	gcSmallHeap = 32 << 20 // below: Go's default of 100 %
	gcLargeHeap = 64 << 20 // above: 20 %
	gcSmallPct  = 100
	gcLargePct  = 20
	// timing: exception — how often the live heap is sampled is a cost
	// trade-off of the collector, unrelated to failure detection.
	gcTuneEvery   = 500 * time.Millisecond
	liveHeapBytes = "/gc/heap/live:bytes"
)

// gcPercent is the headroom for a live heap of live bytes.
func gcPercent(live uint64) int {
	switch {
	case live <= gcSmallHeap:
		return gcSmallPct
	case live >= gcLargeHeap:
		return gcLargePct
	}
	f := float64(live-gcSmallHeap) / float64(gcLargeHeap-gcSmallHeap)
	return gcSmallPct - int(f*float64(gcSmallPct-gcLargePct))
}

// tuneGC sets the headroom from the live heap until ctx ends or the server
// stops.
func (s *Server) tuneGC(ctx context.Context) {
	sample := []metrics.Sample{{Name: liveHeapBytes}}
	cur := -1
	t := time.NewTicker(gcTuneEvery)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if p := gcPercent(sample[0].Value.Uint64()); p != cur {
				debug.SetGCPercent(p)
				cur = p
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}
