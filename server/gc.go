package server

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"ftkv/internal/connlimit"
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
// (debug.SetMemoryLimit) holds the process near what its data needs: the
// records the tables hold now, plus the lowest rest of the live heap
// (live heap minus records) of the last gcFloorWindow, at their GOGC
// headroom, plus gcBurstRoom, plus the runtime's memory besides the heap's
// objects (counted as the runtime counts it against the limit). During a
// burst the collector runs more often instead of letting the heap double;
// tables that grow raise the limit with them at the next sample. There is
// no limit while a copy is being re-seeded, for gcFloorWindow after it,
// or when the operator set GOMEMLIMIT. From the server's start the limit
// applies from the first sample: the tables were recovered before it, and
// a client flooding a fresh server must meet the same bound.
const (
	gcSmallHeap = 32 << 20 // below: Go's default of 100 %
	gcLargeHeap = 64 << 20 // above: 20 %
	gcSmallPct  = 100
	gcLargePct  = 20
	// timing: exception — how often the live heap is sampled is a cost
	// trade-off of the collector, unrelated to failure detection.
	gcTuneEvery   = 250 * time.Millisecond
	gcFloorWindow = 3 * time.Second // timing: exception — as gcTuneEvery
	gcBurstRoom   = 32 << 20
	gcTablesDrop  = 16 << 20 // tables shrinking by more between samples restart the window
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
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}

// gcFloor keeps, for the last window, the live heap's samples less the
// tables' records, and since when it has sampled without a break.
type gcFloor struct {
	window   time.Duration
	since    time.Time // the first sample after the last reset (zero: none)
	wasReset bool
	at       []time.Time
	rest     []uint64
}

// reset forgets every sample (a re-seeding, whose start emptied a table).
func (f *gcFloor) reset() {
	f.since, f.at, f.rest, f.wasReset = time.Time{}, f.at[:0], f.rest[:0], true
}

// add records a sample and returns the lowest rest of the window, and
// whether a limit may follow from it: always before the first reset,
// after one only once the samples span a whole window again.
func (f *gcFloor) add(now time.Time, live, tables uint64) (uint64, bool) {
	if f.since.IsZero() {
		f.since = now
	}
	rest := uint64(0)
	if live > tables {
		rest = live - tables
	}
	f.at, f.rest = append(f.at, now), append(f.rest, rest)
	i := 0
	for i < len(f.at)-1 && now.Sub(f.at[i]) > f.window {
		i++
	}
	f.at, f.rest = f.at[i:], f.rest[i:]
	m := f.rest[0]
	for _, v := range f.rest {
		m = min(m, v)
	}
	return m, !f.wasReset || now.Sub(f.since) >= f.window
}

// clientBuffers is what the connections of clients hold, each bounded by
// its budget: queued answers, unread input, writes in flight.
type clientBuffers struct {
	out, inflight *connlimit.Budget
	in            *connlimit.InputBudget
}

// held is the memory the clients' connections hold now: their queued
// answers twice (gnet keeps them in buffers of powers of two, one of them
// often the rest of a large answer the kernel did not take), their
// unread input and their writes in flight once.
func (b *clientBuffers) held() uint64 {
	if b == nil {
		return 0
	}
	return uint64(2*max(b.out.Used(), 0) + max(b.in.Used(), 0) + max(b.inflight.Used(), 0))
}

// gcLimit is the soft memory limit for tables bytes of records and a
// floor rest of the live heap, when the runtime holds nonHeap bytes
// besides the heap's objects and free spans and the clients' connections
// hold held bytes: the runtime lets the heap grow to about 97 % of the
// limit less nonHeap.
//
// The burst room is for the clients' buffers first (clientBuffers.held);
// beyond it the limit rises with them. They are live data, each within
// its budget, and a limit below them ran the collector without end
// (1,000 clients that never read held 110 MiB: every allocation assisted
// it and event loop rounds took up to 2 s). With their queued answers
// counted once, the runtime returned pages to the system that the next
// copy into gnet's buffers faulted in again: under 500 such clients the
// honest client's operation passed its 2 s deadline in 4 of 6 runs of
// TestHostileManySlowReaders (0 of 6 counted twice: its slowest 0.7-1.2
// s). Everything counted twice, a write flood grew a server by 245-272
// MiB, over TestHostileWriteFlood's 256 MiB (196-215 MiB now). Added on
// top of the burst room, a client pipelining 1 MiB PUTs and GETs without
// reading grew a server by 68.6 MiB, over the 64 MiB of SPEC §6.
func gcLimit(tables, floor, nonHeap, held uint64) int64 {
	data := tables + floor
	goal := data + data*uint64(gcPercent(data))/100
	return int64(nonHeap + (goal+max(gcBurstRoom, held))*100/97)
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
	cur, curLimit := -1, int64(math.MaxInt64)
	var prevTables uint64
	t := time.NewTicker(gcTuneEvery)
	defer t.Stop()
	for {
		metrics.Read(sample)
		var v [5]uint64
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
				l := int64(math.MaxInt64)
				tables := s.tableBytes() // (before anySeeding: a re-seeding that starts between them empties a table)
				if s.anySeeding() || tables+gcTablesDrop < prevTables {
					// A table emptied or dropped whose records the
					// live heap may still hold (a fenced copy keeps its
					// table until the next link): the window starts
					// over rather than take them for the rest.
					floor.reset()
				} else {
					rest, ready := floor.add(time.Now(), live, tables)
					// Besides the heap's objects and free spans: what
					// the runtime counts against the limit (stacks,
					// metadata, the unused part of spans in use).
					nonHeap := v[1] - min(v[1], v[2]+v[3]+v[4])
					if ready {
						l = gcLimit(tables, rest, nonHeap, s.bufs.Load().held())
					}
				}
				prevTables = tables
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

// tableBytes is the bytes of the records of every table of the server.
func (s *Server) tableBytes() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, t := range s.tables {
		n += t.bytes.Load()
	}
	return uint64(max(n, 0))
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
		seeding := st.seeding && !st.fenced // (a fenced copy's re-seeding was abandoned)
		st.mu.Unlock()
		if seeding {
			return true
		}
	}
	return false
}
