package bench

import (
	"context"
	"encoding/csv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func TestSeriesRecorderAndPoints(t *testing.T) {
	s := newSeries(time.Second)
	s.start = time.Unix(1000, 0)
	at := func(ms int) time.Time { return s.start.Add(time.Duration(ms) * time.Millisecond) }

	r1, r2 := newRecorder(s), newRecorder(s)
	r1.at(at(100))
	r1.ops += 3
	_ = r1.hist.RecordValue(1000)
	r2.at(at(900))
	r2.ops++
	r2.errs += 2
	_ = r2.hist.RecordValue(5000)
	r1.at(at(2500)) // skips interval 1: it stays empty
	r1.ops += 4
	_ = r1.hist.RecordValue(2000)
	r1.at(at(3100)) // a sliver past the end of a 3.05s phase
	r1.ops++
	_ = r1.hist.RecordValue(9000)
	r1.flush()
	r2.flush()
	r2.flush() // nothing left: a no-op

	pts := s.points(3050 * time.Millisecond)
	if len(pts) != 3 {
		t.Fatalf("%d points, want 3 (the 50ms sliver folded into the third): %+v", len(pts), pts)
	}
	if p := pts[0]; p.Ops != 4 || p.Errors != 2 || p.Start != 0 || p.Seconds != 1 || p.OpsPerSec != 4 {
		t.Errorf("point 0 = %+v", p)
	}
	if p := pts[0]; p.P99 < 4900 || p.P99 > 5100 || p.P50 < 990 || p.P50 > 1010 {
		t.Errorf("point 0 percentiles p50 %d p99 %d, want ~1000 and ~5000", p.P50, p.P99)
	}
	if p := pts[1]; p.Ops != 0 || p.Errors != 0 || p.OpsPerSec != 0 || p.P99 != 0 {
		t.Errorf("point 1 = %+v, want empty", p)
	}
	if p := pts[2]; p.Ops != 5 || p.Seconds != 1.05 || p.Max < 8900 {
		t.Errorf("point 2 = %+v, want 5 ops over 1.05s, max ~9ms", p)
	}
	// The buckets themselves are untouched by the folding.
	if h := s.buckets[2].hist; h.TotalCount() != 1 {
		t.Errorf("bucket 2 histogram holds %d values, want 1", h.TotalCount())
	}
}

func TestSeriesEmptyPhase(t *testing.T) {
	s := newSeries(time.Second)
	pts := s.points(0)
	if len(pts) != 1 || pts[0].Ops != 0 || pts[0].Seconds != 1 {
		t.Fatalf("points of an empty phase = %+v", pts)
	}
}

func TestSeriesMarkAndAdd(t *testing.T) {
	s := newSeries(100 * time.Millisecond)
	s.start = time.Now().Add(-250 * time.Millisecond)
	s.mark("kill", "server 1")
	if len(s.events) != 1 || s.events[0].At < 0.25 || s.events[0].At > 5 || s.events[0].Kind != "kill" {
		t.Fatalf("events = %+v", s.events)
	}
	if s.index(s.start.Add(-time.Second)) != 0 {
		t.Error("a time before the start is not interval 0")
	}
	h := hdrhistogram.New(histMin, histMax, seriesDigits)
	s.add(5, 1, 0, h) // empty histogram: counted, no percentiles
	if len(s.buckets) != 6 || s.buckets[5].ops != 1 || s.buckets[5].hist != nil {
		t.Errorf("buckets = %+v", s.buckets)
	}
}

func TestWriteCSV(t *testing.T) {
	pts := []Point{
		{Start: 0, Seconds: 0.5, Ops: 100, OpsPerSec: 200, P50: 1500, P99: 12345, Max: 20000},
		{Start: 0.5, Seconds: 0.5, Ops: 0, Errors: 3},
		{Start: 1, Seconds: 0.7, Ops: 7, OpsPerSec: 10},
	}
	evs := []Event{
		{At: 0.6, Kind: "kill", Detail: "server 1, \"pid\" 42"},
		{At: 0.9, Kind: "writable"},
		{At: 1.8, Kind: "recovered", Detail: "late"}, // after the last interval: lands in it
	}
	var b strings.Builder
	if err := WriteCSV(&b, pts, evs); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v\n%s", err, b.String())
	}
	want := [][]string{
		{"second", "ops_per_sec", "ops", "errors", "p50_ms", "p99_ms", "max_ms", "events"},
		{"0", "200", "100", "0", "1.5", "12.345", "20", ""},
		{"0.5", "0", "0", "3", "0", "0", "0", `kill: server 1, "pid" 42; writable`},
		{"1", "10", "7", "0", "0", "0", "0", "recovered: late"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), b.String())
	}
	for i := range want {
		if strings.Join(rows[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("row %d = %q, want %q", i, rows[i], want[i])
		}
	}
}

// A run with a fault records a series whose counts add up to the result's,
// and the fault's marks as events; the fault is stopped with the phase.
func TestRunSeriesAndFault(t *testing.T) {
	m := newMemTarget()
	var stopped atomic.Bool
	cfg := Config{
		Connections: 3, Duration: 450 * time.Millisecond, Ratio: 0.5, Keys: 100, Seed: 3,
		SeriesInterval: 100 * time.Millisecond,
		Fault: func(ctx context.Context, mark func(kind, detail string)) {
			select {
			case <-time.After(150 * time.Millisecond):
				mark("kill", "nothing really")
			case <-ctx.Done():
				return
			}
			<-ctx.Done() // ends with the phase
			stopped.Store(true)
		},
	}
	res, err := Run(context.Background(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	if !stopped.Load() {
		t.Error("Run returned before the fault ended")
	}
	if len(res.Events) != 1 || res.Events[0].Kind != "kill" || res.Events[0].At < 0.14 || res.Events[0].At > 0.45 {
		t.Errorf("events = %+v", res.Events)
	}
	if len(res.Series) < 4 || len(res.Series) > 6 {
		t.Fatalf("%d points for 450ms at 100ms", len(res.Series))
	}
	var ops, errs int64
	for _, p := range res.Series {
		ops += p.Ops
		errs += p.Errors
	}
	if ops != res.Ops || errs != res.Errors {
		t.Errorf("series holds %d ops, %d errors; result %d, %d", ops, errs, res.Ops, res.Errors)
	}
}

// Without a series interval or fault nothing is recorded; a fault alone
// gets 1s intervals.
func TestRunSeriesDefaults(t *testing.T) {
	res, err := Run(context.Background(), Config{Connections: 1, Ops: 10, Keys: 10, Ratio: 0}, newMemTarget())
	if err != nil || res.Series != nil || res.Events != nil {
		t.Fatalf("series %v events %v err %v", res.Series, res.Events, err)
	}
	c := Config{Fault: func(context.Context, func(string, string)) {}}.withDefaults()
	if c.SeriesInterval != time.Second {
		t.Errorf("fault without interval: %s", c.SeriesInterval)
	}
	if err := (Config{SeriesInterval: time.Microsecond}).Validate(); err == nil {
		t.Error("a 1µs interval validated")
	}
}

// Preload alone writes every key once and measures nothing.
func TestPreloadOnly(t *testing.T) {
	m := newMemTarget()
	p, err := Preload(context.Background(), Config{Connections: 4, Keys: 1003, Pipeline: 8, ValueSize: 5}, m)
	if err != nil {
		t.Fatal(err)
	}
	if p.Keys != 1003 || p.Errors != 0 || len(m.data) != 1003 {
		t.Fatalf("preload %+v, %d keys stored", p, len(m.data))
	}
	for k, n := range m.data {
		if n != 1 {
			t.Fatalf("key %s written %d times", k, n)
		}
	}
	if _, err := Preload(context.Background(), Config{Connections: -1}, m); err == nil {
		t.Error("a bad config preloaded")
	}
}
