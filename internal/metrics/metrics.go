// Package metrics is ftkv's thin layer over github.com/VictoriaMetrics/metrics:
// one Registry per process component (a server, a coordinator, a gateway —
// never a global one: tests run several servers in one process), the
// standard latency buckets, and an HTTP listener serving the Prometheus
// text format at /metrics.
//
// VictoriaMetrics/metrics was chosen over prometheus/client_golang for
// its hot-path cost: a counter increment plus a histogram observation
// under parallel load costs about a quarter of client_golang's on this
// project's 2-core benchmark machine (see DESIGN).
package metrics

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	vm "github.com/VictoriaMetrics/metrics"
)

// Counter, Histogram and Gauge are the library's types: their methods
// (Inc, Add, Update, UpdateDuration, Get) are the hot path.
type (
	Counter   = vm.Counter
	Histogram = vm.PrometheusHistogram
	Gauge     = vm.Gauge
)

// LatencyBuckets are the upper bounds, in seconds, of every latency
// histogram: 10 µs to 1 s, about three per decade.
var LatencyBuckets = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3,
	100e-3, 250e-3, 500e-3, 1,
}

// Registry holds one component's metrics.
type Registry struct {
	set     *vm.Set
	process bool // also write the process's go_* and process_* metrics

	mu      sync.Mutex
	writers []func(w io.Writer)
}

// New returns an empty registry. With process, its output also carries
// the Go runtime's and the process's metrics (go_*, process_*): one
// registry per process should ask for them.
func New(process bool) *Registry {
	return &Registry{set: vm.NewSet(), process: process}
}

// Counter registers a counter; name may carry labels: `a_total{op="get"}`.
func (r *Registry) Counter(name string) *Counter { return r.set.NewCounter(name) }

// Counters registers name{label="v"} for each of values, all at once (so
// a rate sees the first increment), by value.
func (r *Registry) Counters(name, label string, values []string) map[string]*Counter {
	m := make(map[string]*Counter, len(values))
	for _, v := range values {
		m[v] = r.Counter(name + `{` + label + `=` + strconv.Quote(v) + `}`)
	}
	return m
}

// Histogram registers a latency histogram (in seconds) with LatencyBuckets.
func (r *Registry) Histogram(name string) *Histogram {
	return r.set.NewPrometheusHistogramExt(name, LatencyBuckets)
}

// GaugeFunc registers a gauge whose value f computes at each scrape.
func (r *Registry) GaugeFunc(name string, f func() float64) { r.set.NewGauge(name, f) }

// Writer registers fn to write more samples at each scrape: series whose
// labels are only known then (one per shard, say). Use Sample to write.
func (r *Registry) Writer(fn func(w io.Writer)) {
	r.mu.Lock()
	r.writers = append(r.writers, fn)
	r.mu.Unlock()
}

// Sample writes one sample line in the text format: name, labels as
// pairs ("shard", "3"), value.
func Sample(w io.Writer, name string, v float64, labels ...string) {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) >= 2 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
		}
		b.WriteByte('}')
	}
	fmt.Fprintf(w, "%s %g\n", b.String(), v)
}

// Write writes every metric in the Prometheus text format: each family
// once, its samples together after its HELP and TYPE lines (the format
// asks for one group per family; Writer functions write series of
// several families in turn, one shard or server after another).
func (r *Registry) Write(w io.Writer) {
	var b bytes.Buffer
	r.set.WritePrometheus(&b)
	r.mu.Lock()
	ws := append([]func(io.Writer){}, r.writers...)
	r.mu.Unlock()
	for _, fn := range ws {
		fn(&b)
	}
	if r.process {
		vm.WriteProcessMetrics(&b)
	}
	_, _ = w.Write(group(b.Bytes()))
}

func init() { vm.ExposeMetadata(true) } // TYPE lines for the library's series

// group orders text-format lines by family, in the order each family
// first appears, each after one HELP line (its text from help) and one
// TYPE line. A family whose
// name ends in _total is a counter; another's type is its TYPE line's
// (the library writes them), else a histogram for series with
// _bucket{le=…}, else a gauge. The _bucket, _sum and _count series of a histogram or summary
// belong to its family.
func group(in []byte) []byte {
	types, helps := map[string]string{}, map[string]string{}
	lines := strings.Split(strings.TrimRight(string(in), "\n"), "\n")
	for _, l := range lines {
		if f, ok := strings.CutPrefix(l, "# HELP "); ok {
			if name, text, ok := strings.Cut(f, " "); ok && text != "" {
				helps[name] = text
			}
		} else if f, ok := strings.CutPrefix(l, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(f, " "); ok {
				types[name] = typ
			}
		} else if name := seriesName(l); strings.HasSuffix(name, "_bucket") && strings.Contains(l, `le="`) {
			if base := strings.TrimSuffix(name, "_bucket"); types[base] == "" {
				types[base] = "histogram"
			}
		}
	}
	var order []string
	samples := map[string][]string{}
	for _, l := range lines {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		fam := family(seriesName(l), types)
		if _, ok := samples[fam]; !ok {
			order = append(order, fam)
		}
		samples[fam] = append(samples[fam], l)
	}
	var out bytes.Buffer
	for _, fam := range order {
		typ := types[fam]
		switch {
		case strings.HasSuffix(fam, "_total"):
			typ = "counter" // (a gauge function may read a counter)
		case typ == "":
			typ = "gauge"
		}
		text := help[fam]
		if text == "" {
			text = helps[fam] // (the library's own, if it has one)
		}
		if text == "" {
			fmt.Fprintf(&out, "# HELP %s\n", fam)
		} else {
			fmt.Fprintf(&out, "# HELP %s %s\n", fam, text)
		}
		fmt.Fprintf(&out, "# TYPE %s %s\n", fam, typ)
		for _, l := range samples[fam] {
			out.WriteString(l)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// seriesName is the metric name a sample line starts with.
func seriesName(l string) string {
	if i := strings.IndexAny(l, "{ "); i >= 0 {
		return l[:i]
	}
	return l
}

// family is the family of series name: a histogram's or summary's for
// its _bucket, _sum and _count series, else the name itself.
func family(name string, types map[string]string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if t := types[base]; t == "histogram" || t == "summary" {
				return base
			}
		}
	}
	return name
}
