package gateway

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The gateway holds little (buffers of commands in flight), and it
// allocates for every command: at Go's default headroom (GOGC 100) its
// small heap is collected so often that marking costs about a fifth of
// its CPU under load. TuneGC keeps the headroom at gcHeadroom bytes at
// least, as a percentage of the live heap, within [100, gcMaxPct]: a few
// tens of MiB more resident, a few times fewer collections; a large live
// heap (many large values in flight) keeps Go's default.
const (
	gcHeadroom = 64 << 20
	gcMaxPct   = 800
	// timing: exception — how often the live heap is sampled is a cost
	// trade-off of the collector, unrelated to failure detection.
	gcTuneEvery = 500 * time.Millisecond
)

// gcPercent is the headroom for a live heap of live bytes.
func gcPercent(live uint64) int {
	if live == 0 {
		return gcMaxPct
	}
	return int(min(max(gcHeadroom*100/live, 100), gcMaxPct))
}

// TuneGC sets the collector's headroom from the live heap (see
// gcHeadroom) until ctx ends. Call it unless GOGC is set.
func TuneGC(ctx context.Context) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
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
		}
	}
}
