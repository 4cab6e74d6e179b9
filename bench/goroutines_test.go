package bench

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// sharedMemTarget is memTarget as a SharedTarget: its requesters count how
// many goroutines are inside Do at once.
type sharedMemTarget struct {
	*memTarget
	hold        time.Duration // each Do sleeps this long, so calls overlap
	maxInFlight atomic.Int64  // most concurrent Do calls seen on one requester
	batches     atomic.Int64  // Do calls with more than one op
}

func (m *sharedMemTarget) NewSharedRequester(ctx context.Context) (Requester, error) {
	r, err := m.NewRequester(ctx)
	if err != nil {
		return nil, err
	}
	return &sharedMemRequester{m: m, r: r}, nil
}

type sharedMemRequester struct {
	m        *sharedMemTarget
	r        Requester
	inFlight atomic.Int64
}

func (r *sharedMemRequester) Do(ctx context.Context, batch []Op) error {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		old := r.m.maxInFlight.Load()
		if n <= old || r.m.maxInFlight.CompareAndSwap(old, n) {
			break
		}
	}
	if len(batch) > 1 {
		r.m.batches.Add(1)
	}
	time.Sleep(r.m.hold)
	return r.r.Do(ctx, batch)
}

func (r *sharedMemRequester) Close() error { return r.r.Close() }

func TestRunGoroutines(t *testing.T) {
	m := &sharedMemTarget{memTarget: newMemTarget(), hold: 200 * time.Microsecond}
	var last atomic.Pointer[Progress]
	cfg := Config{Connections: 3, Goroutines: 8, Ops: 3001, Ratio: 0.5, Keys: 200, ValueSize: 10, Seed: 4,
		Progress: func(p Progress) {
			if p.Phase == PhaseRun {
				last.Store(&p)
			}
		}}
	res, err := Run(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 3001 || res.Gets+res.Puts != res.Ops || res.Errors != 0 || res.Misses != 0 {
		t.Fatalf("ops %d (gets %d puts %d errors %d misses %d), want 3001 without errors or misses",
			res.Ops, res.Gets, res.Puts, res.Errors, res.Misses)
	}
	if p := res.Preload; p == nil || p.Keys != 200 || len(m.data) != 200 {
		t.Fatalf("preload %+v, %d keys stored; want 200", p, len(m.data))
	}
	// One requester per connection, shared: 3 opened, several calls at once
	// on one of them, never a batch.
	if m.opened.Load() != 3 || m.maxInFlight.Load() < 2 || m.maxInFlight.Load() > 8 || m.batches.Load() != 0 {
		t.Errorf("opened %d requesters, up to %d calls in flight on one, %d batches; want 3, 2..8, 0",
			m.opened.Load(), m.maxInFlight.Load(), m.batches.Load())
	}
	if res.Goroutines != 8 || res.Connections != 3 || res.Pipeline != 1 {
		t.Errorf("result header %+v", res)
	}
	// The latencies each goroutine gathered reached the shared histograms.
	if res.Latency.P50 < 1 || res.Latency.Max < res.Latency.P99 || res.GetLatency.P50 == 0 || res.PutLatency.P50 == 0 {
		t.Errorf("latency %+v (get %+v, put %+v); want all set", res.Latency, res.GetLatency, res.PutLatency)
	}
	if p := last.Load(); p == nil || !p.Done || p.Ops != 3001 || p.Total != 3001 {
		t.Errorf("last run progress %+v", p)
	}
	var b strings.Builder
	if err := res.WriteText(&b); err != nil || !strings.Contains(b.String(), "3 connections, 8 goroutines each") {
		t.Errorf("text report (%v):\n%s", err, b.String())
	}
}

// The histograms count every answered operation exactly once.
func TestGoroutinesLatencyCounts(t *testing.T) {
	cfg := Config{Connections: 2, Goroutines: 3, Keys: 10}.withDefaults()
	ws := newWorkers(cfg, newMemTarget(), 1, []Requester{&memRequester{}, &memRequester{}})
	if len(ws) != 6 || ws[0].lat != ws[2].lat || ws[0].lat == ws[3].lat || ws[4].req != ws[3].req {
		t.Fatalf("workers not grouped 3 per requester")
	}
	for i, w := range ws {
		for j := 0; j < 100*(i+1)+pendingLatencies; j++ {
			w.record(Kind(j%2), int64(j+1))
		}
		w.flushLatencies()
	}
	var total int64
	for _, w := range ws {
		if w.lane == 0 {
			total += w.lat.get.TotalCount() + w.lat.put.TotalCount()
		}
	}
	if want := int64(100*21 + 6*pendingLatencies); total != want {
		t.Errorf("histograms hold %d latencies, want %d", total, want)
	}
}

func TestRunGoroutinesTimeout(t *testing.T) {
	m := &sharedMemTarget{memTarget: newMemTarget()}
	m.block = true
	res, err := Run(context.Background(), Config{Connections: 1, Goroutines: 4, Keys: 10, Ratio: 0, Ops: 8,
		Timeout: 200 * time.Millisecond}, m)
	if err != nil {
		t.Fatal(err)
	}
	// Each goroutine's op times out on its own: 2 rounds of 4 at once.
	if res.Errors != 8 || !strings.Contains(res.FirstError, "canceled") || m.opened.Load() != 1 {
		t.Fatalf("errors %d (%s), %d requesters; want 8 timeouts on 1", res.Errors, res.FirstError, m.opened.Load())
	}
}

func TestRunGoroutinesNeedsSharedTarget(t *testing.T) {
	_, err := Run(context.Background(), Config{Goroutines: 2, Ops: 1}, newMemTarget())
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "cannot share") {
		t.Fatalf("Run = %v, want ErrConfig: the target cannot be shared", err)
	}
	if _, err := Run(context.Background(), Config{Goroutines: 2, Ops: 1}, Redis("127.0.0.1:1")); !errors.Is(err, ErrConfig) {
		t.Fatalf("raw Redis target with goroutines: %v, want ErrConfig", err)
	}
}

func TestCompareShapes(t *testing.T) {
	g := func(target string, ops float64, p, gor int) Result {
		r := res("SET c50 G16", target, ops, 100, 1000)
		r.Pipeline, r.Goroutines = p, gor
		return r
	}
	rows := Compare([]Result{
		g("ftkv", 100, 1, 16),
		g("redis", 400, 16, 1),
		g(RueidisTargetName, 200, 1, 16),
		res("SET c50 P1", "ftkv", 1, 1, 1), // old results: no goroutines field
		res("SET c50 P1", "redis", 1, 1, 1),
	})
	if len(rows) != 3 || rows[0].Ref != "redis P16" || rows[0].Ratio != 0.25 ||
		rows[1].Ref != RueidisTargetName || rows[1].Ratio != 0.5 || rows[2].Ref != "redis" {
		t.Fatalf("rows %+v", rows)
	}
}
