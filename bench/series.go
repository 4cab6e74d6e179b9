package bench

import (
	"context"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The time series of a run: the measured phase cut into intervals of
// Config.SeriesInterval, each with the operations answered and failed in it
// (by completion time) and their latency percentiles, plus the events a
// Config.Fault marked. It is what the CSV and the chart are drawn from.

// Point is one interval of the series.
type Point struct {
	Start     float64 `json:"t_s"`         // seconds from the start of the measured phase
	Seconds   float64 `json:"seconds"`     // length (the last one may be short)
	Ops       int64   `json:"ops"`         // answered without error
	Errors    int64   `json:"errors"`      // failed
	OpsPerSec float64 `json:"ops_per_sec"` // Ops / Seconds
	P50       int64   `json:"p50_us"`
	P99       int64   `json:"p99_us"`
	Max       int64   `json:"max_us"`
}

// Event is something that happened during the measured phase, e.g. a kill.
type Event struct {
	At     float64 `json:"t_s"`  // seconds from the start of the measured phase
	Kind   string  `json:"kind"` // e.g. "kill", "writable", "recovered"
	Detail string  `json:"detail,omitempty"`
}

// Fault is run in its own goroutine while the measured phase runs, started
// with the phase; ctx ends when the phase does (Run waits for it to
// return). mark records an event at the current time.
type Fault func(ctx context.Context, mark func(kind, detail string))

// Series histogram precision: per-interval percentiles need less than the
// run's, and are merged often.
const seriesDigits = 2

// series gathers the workers' intervals of the measured phase.
type series struct {
	interval time.Duration
	start    time.Time

	mu      sync.Mutex
	buckets []seriesBucket
	events  []Event
}

type seriesBucket struct {
	ops, errs int64
	hist      *hdrhistogram.Histogram
}

func newSeries(interval time.Duration) *series { return &series{interval: interval} }

func (s *series) index(t time.Time) int {
	i := int(t.Sub(s.start) / s.interval)
	return max(i, 0)
}

// add merges one worker's counts of interval i.
func (s *series) add(i int, ops, errs int64, h *hdrhistogram.Histogram) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.buckets) <= i {
		s.buckets = append(s.buckets, seriesBucket{})
	}
	b := &s.buckets[i]
	b.ops += ops
	b.errs += errs
	if h != nil && h.TotalCount() > 0 {
		if b.hist == nil {
			b.hist = hdrhistogram.New(histMin, histMax, seriesDigits)
		}
		b.hist.Merge(h)
	}
}

func (s *series) mark(kind, detail string) {
	at := time.Since(s.start).Seconds()
	s.mu.Lock()
	s.events = append(s.events, Event{At: at, Kind: kind, Detail: detail})
	s.mu.Unlock()
}

// points returns the series of a phase that lasted elapsed. A last
// interval shorter than half an interval (operations that finished as the
// clock stopped) is folded into the one before, so no rate is computed over
// a sliver of time.
func (s *series) points(elapsed time.Duration) []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int((elapsed + s.interval - 1) / s.interval)
	n = max(n, len(s.buckets), 1)
	type span struct {
		start, length time.Duration
		b             seriesBucket
	}
	spans := make([]span, 0, n)
	for i := 0; i < n; i++ {
		start := time.Duration(i) * s.interval
		length := min(s.interval, elapsed-start)
		var b seriesBucket
		if i < len(s.buckets) {
			b = s.buckets[i]
		}
		if length < s.interval/2 && len(spans) > 0 {
			last := &spans[len(spans)-1]
			last.length += max(length, 0)
			last.b.ops += b.ops
			last.b.errs += b.errs
			if b.hist != nil { // merged into a new histogram: the buckets stay as they are
				h := hdrhistogram.New(histMin, histMax, seriesDigits)
				if last.b.hist != nil {
					h.Merge(last.b.hist)
				}
				h.Merge(b.hist)
				last.b.hist = h
			}
			continue
		}
		if length <= 0 {
			length = s.interval
		}
		spans = append(spans, span{start, length, b})
	}
	out := make([]Point, len(spans))
	for i, sp := range spans {
		p := Point{Start: sp.start.Seconds(), Seconds: sp.length.Seconds(), Ops: sp.b.ops, Errors: sp.b.errs}
		if sp.b.hist != nil {
			l := LatencyOf(sp.b.hist)
			p.P50, p.P99, p.Max = l.P50, l.P99, l.Max
		}
		p.OpsPerSec = float64(p.Ops) / p.Seconds
		out[i] = p
	}
	return out
}

// recorder is a worker's view of the series: the interval it is filling.
// Only the worker's goroutine uses it.
type recorder struct {
	s         *series
	cur       int
	ops, errs int64
	hist      *hdrhistogram.Histogram
}

func newRecorder(s *series) *recorder {
	return &recorder{s: s, hist: hdrhistogram.New(histMin, histMax, seriesDigits)}
}

// at moves the recorder to the interval of t, handing the one it filled
// to the series.
func (r *recorder) at(t time.Time) {
	if i := r.s.index(t); i != r.cur {
		r.flush()
		r.cur = i
	}
}

func (r *recorder) flush() {
	if r.ops == 0 && r.errs == 0 {
		return
	}
	r.s.add(r.cur, r.ops, r.errs, r.hist)
	r.ops, r.errs = 0, 0
	r.hist.Reset()
}

// WriteCSV writes the series as CSV with a header row:
// second,ops_per_sec,ops,errors,p50_ms,p99_ms,max_ms,events — events are
// those that happened during the interval, "kind: detail" joined by "; ".
func WriteCSV(w io.Writer, points []Point, events []Event) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"second", "ops_per_sec", "ops", "errors", "p50_ms", "p99_ms", "max_ms", "events"})
	for i, p := range points {
		var evs []string
		for _, e := range events {
			last := i == len(points)-1
			if e.At >= p.Start && (e.At < p.Start+p.Seconds || last) {
				evs = append(evs, eventText(e))
			}
		}
		_ = cw.Write([]string{
			strconv.FormatFloat(p.Start, 'f', -1, 64),
			strconv.FormatFloat(p.OpsPerSec, 'f', 0, 64),
			strconv.FormatInt(p.Ops, 10),
			strconv.FormatInt(p.Errors, 10),
			millis(p.P50), millis(p.P99), millis(p.Max),
			strings.Join(evs, "; "),
		})
	}
	cw.Flush()
	return cw.Error()
}

func eventText(e Event) string {
	if e.Detail == "" {
		return e.Kind
	}
	return e.Kind + ": " + e.Detail
}

// millis renders microseconds as milliseconds with up to 3 decimals.
func millis(us int64) string {
	return strconv.FormatFloat(float64(us)/1000, 'f', -1, 64)
}
