package server

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's headroom (GOGC) follows the live heap: a small heap is
// cheap to let double between collections (fewer collections, more
// throughput), while a server holding many keys keeps its resident set
// near its data, where each percent of headroom costs about a byte per
// stored entry.
//
// A burst caps the headroom too. Clients' buffers, in-flight writes of
// large values and their copies (log, replication) come and go within
// seconds, and with a small table a 100 % headroom over such a burst let
// the resident set grow by twice the burst: a client pipelining 1 MiB
// PUTs and GETs without reading its answers grew a server by 70-100 MiB,
// over the 64 MiB the project promises (SPEC §6). So a soft memory limit
// (debug.SetMemoryLimit) holds the process near the heap its data needs,
// judged on the lowest live heap of the last few seconds, plus
// gcBurstRoom: during a burst the collector runs more often (the runtime
// bounds it to half the CPU) instead of letting the heap double. Data that
// grows for good raises the floor within gcFloorWindow; a copy being
// re-seeded (a whole shard arriving at once) lifts the limit meanwhile.
const (
	gcSmallHeap = 32 << 20 // below: Go's default of 100 %
	gcLargeHeap = 64 << 20 // above: 20 %
	gcSmallPct  = 100
	gcLargePct  = 20
	// timing: exception — how often the live heap is sampled is a cost
	// trade-off of the collector, unrelated to failure detection.
	gcTuneEvery   = 250 * time.Millisecond
	gcFloorWindow = 3 * time.Second // timing: exception — as gcTuneEvery
	gcBurstRoom   = 40 << 20
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

// gcSamples names the runtime metrics tuneGC reads, in this order.
var gcSamples = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}

// gcFloor keeps the live heap's samples of the last window and gives
// their minimum.
type gcFloor struct {
	window time.Duration
	at     []time.Time
	live   []uint64
}

func (f *gcFloor) add(now time.Time, live uint64) uint64 {
	f.at, f.live = append(f.at, now), append(f.live, live)
	i := 0
	for i < len(f.at)-1 && now.Sub(f.at[i]) > f.window {
		i++
	}
	f.at, f.live = f.at[i:], f.live[i:]
	m := f.live[0]
	for _, v := range f.live {
		m = min(m, v)
	}
	return m
}

// gcLimit is the soft memory limit for a floor live heap, the memory
// the runtime holds besides the heap (stacks, metadata), and whether a
// copy is being re-seeded (no limit then).
func gcLimit(floor, nonHeap uint64, seeding bool) int64 {
	if seeding {
		return math.MaxInt64
	}
	goal := floor + floor*uint64(gcPercent(floor))/100
	return int64(goal + nonHeap + gcBurstRoom)
}

// tuneGC sets the headroom and the memory limit from the live heap until
// ctx ends or the server stops. A GOMEMLIMIT set by the operator is left
// alone.
func (s *Server) tuneGC(ctx context.Context) {
	sample := make([]metrics.Sample, len(gcSamples))
	for i, n := range gcSamples {
		sample[i].Name = n
	}
	limit := os.Getenv("GOMEMLIMIT") == ""
	floor := gcFloor{window: gcFloorWindow}
	cur, curLimit := -1, int64(-1)
	t := time.NewTicker(gcTuneEvery)
	defer t.Stop()
	for {
		metrics.Read(sample)
		var v [6]uint64
		ok := true
		for i := range sample {
			if sample[i].Value.Kind() != metrics.KindUint64 {
				ok = false
				break
			}
			v[i] = sample[i].Value.Uint64()
		}
		if ok {
			live := v[0]
			if p := gcPercent(live); p != cur {
				debug.SetGCPercent(p)
				cur = p
			}
			if limit {
				heap := v[2] + v[3] + v[4] + v[5]
				nonHeap := uint64(0)
				if v[1] > heap {
					nonHeap = v[1] - heap
				}
				l := gcLimit(floor.add(time.Now(), live), nonHeap, s.anySeeding())
				if d := l - curLimit; d > 1<<20 || d < -(1<<20) {
					debug.SetMemoryLimit(l)
					curLimit = l
				}
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

// anySeeding reports whether a copy this server keeps is being re-seeded.
func (s *Server) anySeeding() bool {
	s.secMu.Lock()
	secs := make([]*secState, 0, len(s.sec))
	for _, st := range s.sec {
		secs = append(secs, st)
	}
	s.secMu.Unlock()
	for _, st := range secs {
		st.mu.Lock()
		seeding := st.seeding
		st.mu.Unlock()
		if seeding {
			return true
		}
	}
	return false
}
