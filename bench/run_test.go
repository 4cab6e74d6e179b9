package bench

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memTarget is an in-process Target over a map, with knobs for failures.
type memTarget struct {
	mu      sync.Mutex
	data    map[string]int // key -> times written
	dialErr error
	opErr   func(op *Op) error // nil: succeed
	block   bool               // ops wait for ctx's end
	broken  atomic.Int64       // Do calls that return a requester error
	opened  atomic.Int64
	maxPipe atomic.Int64 // the longest batch with a get in it
	maxPuts atomic.Int64 // the longest batch of puts only
}

func newMemTarget() *memTarget { return &memTarget{data: map[string]int{}} }

func (m *memTarget) Name() string { return "mem" }
func (m *memTarget) Addr() string { return "memory" }

func (m *memTarget) NewRequester(ctx context.Context) (Requester, error) {
	if m.dialErr != nil {
		return nil, m.dialErr
	}
	m.opened.Add(1)
	return &memRequester{m: m}, nil
}

type memRequester struct{ m *memTarget }

func (r *memRequester) Do(ctx context.Context, batch []Op) error {
	m := r.m
	longest := &m.maxPuts
	for i := range batch {
		if batch[i].Kind == Get {
			longest = &m.maxPipe
		}
	}
	if n := int64(len(batch)); n > longest.Load() {
		longest.Store(n)
	}
	if m.broken.Load() > 0 && m.broken.Add(-1) >= 0 {
		batch[0].Done, batch[0].Latency = true, time.Microsecond // one answered, the rest lost
		return errors.New("connection reset")
	}
	for i := range batch {
		op := &batch[i]
		start := time.Now()
		if m.block {
			<-ctx.Done()
			op.Err, op.Done = ctx.Err(), true
			continue
		}
		if m.opErr != nil {
			if op.Err = m.opErr(op); op.Err != nil {
				op.Done = true
				continue
			}
		}
		m.mu.Lock()
		if op.Kind == Put {
			m.data[string(op.Key)]++
		} else {
			op.Miss = m.data[string(op.Key)] == 0
		}
		m.mu.Unlock()
		op.Latency, op.Done = time.Since(start)+time.Microsecond, true
	}
	return nil
}

func (r *memRequester) Close() error { return nil }

func TestRunCount(t *testing.T) {
	m := newMemTarget()
	cfg := Config{Connections: 7, Ops: 10001, Ratio: 0.5, Keys: 500, Pipeline: 4, ValueSize: 10, Seed: 9}
	res, err := Run(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 10001 || res.Gets+res.Puts != res.Ops || res.Errors != 0 {
		t.Fatalf("ops %d (gets %d puts %d errors %d), want 10001", res.Ops, res.Gets, res.Puts, res.Errors)
	}
	if res.Gets < 4500 || res.Gets > 5500 {
		t.Errorf("gets %d of 10001 at ratio 0.5", res.Gets)
	}
	if res.Misses != 0 {
		t.Errorf("%d misses after the preload", res.Misses)
	}
	p := res.Preload
	if p == nil || p.Keys != 500 || p.Errors != 0 {
		t.Fatalf("preload = %+v, want 500 keys", p)
	}
	if len(m.data) != 500 {
		t.Errorf("%d keys stored, want 500", len(m.data))
	}
	if m.opened.Load() != 7 || m.maxPipe.Load() != 4 {
		t.Errorf("opened %d requesters with batches up to %d; want 7 and 4", m.opened.Load(), m.maxPipe.Load())
	}
	if m.maxPuts.Load() != preloadDepth {
		t.Errorf("preloaded in batches of up to %d puts, want %d", m.maxPuts.Load(), preloadDepth)
	}
	if res.Seed != 9 || res.Connections != 7 || res.Pipeline != 4 || res.Target != "mem" {
		t.Errorf("result header %+v", res)
	}
	if res.Latency.P50 < 1 || res.Latency.Max < res.Latency.P99 || res.OpsPerSec <= 0 {
		t.Errorf("latency %+v, %f ops/s", res.Latency, res.OpsPerSec)
	}
}

// TestPreloadBatchLen: the preload pipelines small values deeper than the
// run, never shallower than it, and large values no deeper than fits a
// batch of about 1 MiB.
func TestPreloadBatchLen(t *testing.T) {
	for _, c := range []struct {
		size, pipeline, want int
	}{
		{100, 1, preloadDepth},
		{100, 64, 64},
		{1 << 20, 1, 1},
		{1 << 20, 16, 16},
		{64 << 10, 1, 15}, // 1 MiB / (64 KiB + a 12-byte key)
		{0, 1, preloadDepth},
	} {
		cfg := Config{ValueSize: c.size, Pipeline: c.pipeline, Keys: 100000, Goroutines: 1}
		if got := preloadBatchLen(cfg); got != c.want {
			t.Errorf("value %d B, pipeline %d: batches of %d, want %d", c.size, c.pipeline, got, c.want)
		}
	}
	if got := preloadBatchLen(Config{ValueSize: 100, Pipeline: 1, Keys: 100000, Goroutines: 16}); got != 1 {
		t.Errorf("16 goroutines per requester: batches of %d, want 1", got)
	}
}

func TestRunPutsOnlyNoPreload(t *testing.T) {
	m := newMemTarget()
	res, err := Run(context.Background(), Config{Connections: 2, Ops: 100, Ratio: 0, Keys: 1000, Seed: 1}, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Preload != nil || res.Gets != 0 || res.Puts != 100 {
		t.Fatalf("preload %+v, gets %d, puts %d", res.Preload, res.Gets, res.Puts)
	}
}

func TestRunMissesWithoutPreload(t *testing.T) {
	m := newMemTarget()
	res, err := Run(context.Background(), Config{Connections: 2, Ops: 100, Ratio: 1, Keys: 1000, Preload: PreloadOff}, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Gets != 100 || res.Misses != 100 || res.Errors != 0 {
		t.Fatalf("gets %d misses %d errors %d, want 100 misses and no errors", res.Gets, res.Misses, res.Errors)
	}
}

func TestRunDuration(t *testing.T) {
	m := newMemTarget()
	start := time.Now()
	res, err := Run(context.Background(), Config{Connections: 3, Duration: 300 * time.Millisecond, Ratio: 0.5, Keys: 100}, m)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("a 300ms run took %s", d)
	}
	if res.Seconds < 0.3 || res.Ops == 0 || res.Interrupted {
		t.Errorf("seconds %.3f, ops %d, interrupted %v", res.Seconds, res.Ops, res.Interrupted)
	}
}

func TestRunInterrupted(t *testing.T) {
	m := newMemTarget()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res, err := Run(ctx, Config{Connections: 3, Duration: time.Hour, Ratio: 0, Keys: 100}, m)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 3*time.Second || !res.Interrupted || res.Ops == 0 {
		t.Fatalf("after %s: interrupted %v, ops %d", time.Since(start), res.Interrupted, res.Ops)
	}
}

func TestRunUnreachable(t *testing.T) {
	m := newMemTarget()
	m.dialErr = errors.New("connection refused")
	res, err := Run(context.Background(), Config{Ops: 10}, m)
	if res != nil || err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Run = %v, %v; want the dial error", res, err)
	}
}

func TestRunBadConfig(t *testing.T) {
	if _, err := Run(context.Background(), Config{Ratio: 3}, newMemTarget()); !errors.Is(err, ErrConfig) {
		t.Fatalf("Run = %v, want ErrConfig", err)
	}
}

func TestRunPreloadFails(t *testing.T) {
	m := newMemTarget()
	m.opErr = func(op *Op) error { return errors.New("disk full") }
	_, err := Run(context.Background(), Config{Connections: 2, Keys: 1000, Ratio: 0.5, Ops: 10}, m)
	if err == nil || !strings.Contains(err.Error(), "preload") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Run = %v, want a preload error", err)
	}
}

func TestRunErrorsCountedAndAbort(t *testing.T) {
	m := newMemTarget()
	m.opErr = func(op *Op) error {
		if op.Kind == Get {
			return errors.New("boom")
		}
		return nil
	}
	res, err := Run(context.Background(), Config{Connections: 2, Keys: 10, Ratio: 0.5, Ops: 1000, Preload: PreloadOff, MaxErrors: -1}, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors+res.Ops != 1000 || res.Gets != 0 || res.Errors < 400 || res.FirstError != "boom" {
		t.Fatalf("ops %d errors %d gets %d first %q", res.Ops, res.Errors, res.Gets, res.FirstError)
	}

	res, err = Run(context.Background(), Config{Connections: 2, Keys: 10, Ratio: 0.5, Duration: time.Hour, Preload: PreloadOff, MaxErrors: 50}, m)
	if !errors.Is(err, ErrTooManyErrors) || res == nil || res.Errors < 50 {
		t.Fatalf("Run = %+v, %v; want ErrTooManyErrors with the partial result", res, err)
	}
}

func TestRunReconnects(t *testing.T) {
	m := newMemTarget()
	m.broken.Store(3)
	res, err := Run(context.Background(), Config{Connections: 1, Keys: 10, Ratio: 0, Ops: 100, Pipeline: 5}, m)
	if err != nil {
		t.Fatal(err)
	}
	// Each broken batch: 1 answered, 4 failed.
	if res.Reconnects != 3 || res.Errors != 12 || res.Ops != 88 {
		t.Fatalf("reconnects %d errors %d ops %d; want 3, 12, 88", res.Reconnects, res.Errors, res.Ops)
	}
}

func TestRunTimeout(t *testing.T) {
	m := newMemTarget()
	m.block = true
	start := time.Now()
	res, err := Run(context.Background(), Config{Connections: 2, Keys: 10, Ratio: 0, Ops: 4, Timeout: 200 * time.Millisecond}, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 4 || !strings.Contains(res.FirstError, "canceled") {
		t.Fatalf("errors %d (%s), want 4 timeouts", res.Errors, res.FirstError)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Errorf("2 rounds of 200ms timeouts took %s", d)
	}
}

func TestRunProgress(t *testing.T) {
	var mu sync.Mutex
	var last = map[string]Progress{}
	cfg := Config{Connections: 2, Keys: 100, Ratio: 0.5, Ops: 1000, Progress: func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[p.Phase]; ok && prev.Done {
			t.Errorf("progress after Done: %+v", p)
		}
		last[p.Phase] = p
	}}
	if _, err := Run(context.Background(), cfg, newMemTarget()); err != nil {
		t.Fatal(err)
	}
	if p := last[PhasePreload]; !p.Done || p.Ops != 100 || p.Total != 100 {
		t.Errorf("last preload progress %+v", p)
	}
	if p := last[PhaseRun]; !p.Done || p.Ops != 1000 || p.Total != 1000 {
		t.Errorf("last run progress %+v", p)
	}
}

// TestRunRedis runs the whole loop against the fake Redis over TCP.
func TestRunRedis(t *testing.T) {
	f := newFakeRedis()
	addr := f.listen(t)
	res, err := Run(context.Background(), Config{Connections: 4, Keys: 200, Ratio: 0.7, Ops: 2000, Pipeline: 8}, Redis(addr))
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 2000 || res.Errors != 0 || res.Misses != 0 || res.Preload.Keys != 200 || res.Target != "redis" {
		t.Fatalf("result %+v", res)
	}
	if len(f.data) != 200 {
		t.Errorf("%d keys in the fake, want 200", len(f.data))
	}
}

func TestRunRedisUnreachable(t *testing.T) {
	_, err := Run(context.Background(), Config{Ops: 1}, Redis("127.0.0.1:1"))
	if err == nil || !strings.Contains(err.Error(), "redis 127.0.0.1:1") {
		t.Fatalf("Run = %v, want a dial error naming the address", err)
	}
}
