package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is the outcome of a run. Its JSON form (Result.JSON) is what
// scripts rely on; field names keep their meaning.
type Result struct {
	Target      string  `json:"target"`
	Addr        string  `json:"addr"`
	Connections int     `json:"connections"`
	Pipeline    int     `json:"pipeline"`
	Goroutines  int     `json:"goroutines"` // per connection (Config.Goroutines)
	ValueSize   int     `json:"value_size"`
	Keys        int     `json:"keys"`
	Ratio       float64 `json:"ratio"`
	Seed        uint64  `json:"seed"`

	// Measured phase. Ops = Gets + Puts, the operations answered without
	// error; Errors are the failed ones (not in the latencies).
	Ops           int64   `json:"ops"`
	Gets          int64   `json:"gets"`
	Puts          int64   `json:"puts"`
	Misses        int64   `json:"misses"` // gets that found no value
	Errors        int64   `json:"errors"`
	ConnectErrors int64   `json:"connect_errors"` // failed reconnects
	Reconnects    int64   `json:"reconnects"`
	Seconds       float64 `json:"seconds"`
	OpsPerSec     float64 `json:"ops_per_sec"`
	GetsPerSec    float64 `json:"gets_per_sec"`
	PutsPerSec    float64 `json:"puts_per_sec"`
	Latency       Latency `json:"latency_us"`
	GetLatency    Latency `json:"get_latency_us"`
	PutLatency    Latency `json:"put_latency_us"`
	FirstError    string  `json:"first_error,omitempty"`
	Interrupted   bool    `json:"interrupted"` // stopped early by ctx (ctrl+c)

	Preload *PreloadResult `json:"preload,omitempty"`

	// Label names the run in a comparison (bench -label); free text.
	Label string `json:"label,omitempty"`
	// Series is the measured phase interval by interval (Config.SeriesInterval).
	Series []Point `json:"series,omitempty"`
	// Events are the marks of Config.Fault, in time order.
	Events []Event `json:"events,omitempty"`
	// Kill reports a server killed during the run (bench -kill-after).
	Kill *KillReport `json:"kill,omitempty"`
}

// PreloadResult reports the preload phase, which is not part of the measurement.
type PreloadResult struct {
	Keys        int64   `json:"keys"` // keys written
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PutsPerSec  float64 `json:"puts_per_sec"`
	Interrupted bool    `json:"interrupted"`
}

// Latency holds percentiles of operation latency in microseconds.
type Latency struct {
	P50  int64   `json:"p50"`
	P90  int64   `json:"p90"`
	P99  int64   `json:"p99"`
	P999 int64   `json:"p999"`
	Max  int64   `json:"max"`
	Mean float64 `json:"mean"`
}

// LatencyOf reads the percentiles of h (values in microseconds).
func LatencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	v := h.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
	return Latency{
		P50:  v[50],
		P90:  v[90],
		P99:  v[99],
		P999: v[99.9],
		Max:  h.Max(),
		Mean: h.Mean(),
	}
}

func newResult(cfg Config, t Target, seed uint64) *Result {
	return &Result{
		Target:      t.Name(),
		Addr:        t.Addr(),
		Connections: cfg.Connections,
		Pipeline:    cfg.Pipeline,
		Goroutines:  cfg.Goroutines,
		ValueSize:   cfg.ValueSize,
		Keys:        cfg.Keys,
		Ratio:       cfg.Ratio,
		Seed:        seed,
	}
}

// fill merges the workers' counts and histograms after the measured phase.
func (r *Result) fill(ws []*worker, ph *phase) {
	all, gets, puts := newHistogram(), newHistogram(), newHistogram()
	for _, w := range ws {
		r.Gets += w.gets
		r.Puts += w.puts
		r.Misses += w.misses
		r.Errors += w.errs
		r.ConnectErrors += w.connErrs
		r.Reconnects += w.reconns
		if r.FirstError == "" && w.firstErr != nil {
			r.FirstError = w.firstErr.Error()
		}
		if w.lane == 0 { // the requester's histograms, once
			gets.Merge(w.lat.get)
			puts.Merge(w.lat.put)
		}
	}
	all.Merge(gets)
	all.Merge(puts)
	r.Ops = r.Gets + r.Puts
	r.Seconds = ph.elapsed.Seconds()
	if r.Seconds > 0 {
		r.OpsPerSec = float64(r.Ops) / r.Seconds
		r.GetsPerSec = float64(r.Gets) / r.Seconds
		r.PutsPerSec = float64(r.Puts) / r.Seconds
	}
	r.Latency = LatencyOf(all)
	r.GetLatency = LatencyOf(gets)
	r.PutLatency = LatencyOf(puts)
	r.Interrupted = ph.interrupted
}

// JSON returns r as one line of JSON.
func (r *Result) JSON() []byte {
	b, err := json.Marshal(r)
	if err != nil { // only plain fields: cannot happen
		panic(err)
	}
	return b
}

// WriteText writes r for a human, one aspect per line.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "target      %s %s\n", r.Target, r.Addr)
	fmt.Fprintf(&b, "workload    %d connections, %s, %d B values, %d keys, %.0f%% gets, seed %d\n",
		r.Connections, r.concurrency(), r.ValueSize, r.Keys, r.Ratio*100, r.Seed)
	if p := r.Preload; p != nil {
		fmt.Fprintf(&b, "preload     %d keys in %.2fs (%s puts/s), %d errors%s (not measured)\n",
			p.Keys, p.Seconds, FormatRate(p.PutsPerSec), p.Errors, interrupted(p.Interrupted))
		if p.Interrupted {
			b.WriteString("run         not started: interrupted during the preload\n")
			_, err := io.WriteString(w, b.String())
			return err
		}
	}
	fmt.Fprintf(&b, "throughput  %s ops/s  (gets %s/s, puts %s/s)\n",
		FormatRate(r.OpsPerSec), FormatRate(r.GetsPerSec), FormatRate(r.PutsPerSec))
	fmt.Fprintf(&b, "operations  %d in %.2fs: %d gets (%d misses), %d puts, %d errors%s\n",
		r.Ops, r.Seconds, r.Gets, r.Misses, r.Puts, r.Errors, interrupted(r.Interrupted))
	if r.ConnectErrors > 0 || r.Reconnects > 0 {
		fmt.Fprintf(&b, "connections %d reconnects, %d failed attempts\n", r.Reconnects, r.ConnectErrors)
	}
	if r.FirstError != "" {
		fmt.Fprintf(&b, "first error %s\n", r.FirstError)
	}
	fmt.Fprintf(&b, "latency     %s\n", latencyLine(r.Latency))
	if r.Gets > 0 && r.Puts > 0 {
		fmt.Fprintf(&b, "  get       %s\n", latencyLine(r.GetLatency))
		fmt.Fprintf(&b, "  put       %s\n", latencyLine(r.PutLatency))
	}
	if k := r.Kill; k != nil {
		fmt.Fprintf(&b, "kill        %s\n", k.Text())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// concurrency says how each connection keeps operations in flight:
// "pipeline P", or "G goroutines each" sharing it.
func (r *Result) concurrency() string {
	if r.Goroutines > 1 {
		return fmt.Sprintf("%d goroutines each", r.Goroutines)
	}
	return fmt.Sprintf("pipeline %d", r.Pipeline)
}

func interrupted(yes bool) string {
	if yes {
		return ", interrupted"
	}
	return ""
}

func latencyLine(l Latency) string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
		FormatMicros(l.P50), FormatMicros(l.P90), FormatMicros(l.P99), FormatMicros(l.P999), FormatMicros(l.Max))
}

// FormatMicros renders a latency given in microseconds with three
// significant digits: "87µs", "1.25ms", "2.50s".
func FormatMicros(us int64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%dµs", us)
	case us < 999_500: // above rounds to 1000ms: say 1.00s
		return trim3(float64(us)/1e3) + "ms"
	default:
		return trim3(float64(us)/1e6) + "s"
	}
}

// trim3 prints v (1 <= v < 1000 except for seconds) with three significant digits.
func trim3(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// FormatRate renders a rate with thousands separators: 86123.4 -> "86,123".
func FormatRate(v float64) string {
	n := int64(v + 0.5)
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
