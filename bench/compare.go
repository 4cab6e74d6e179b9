package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// The side-by-side report of scripts/bench-compare.sh: results of
// `bench -json -label L` runs (one JSON object per line, several
// repetitions of each label and target) folded into one row per label and
// reference target, medians over the repetitions, with ftkv/reference ratios.

// FTKVTarget is the target name every comparison row measures against the others.
const FTKVTarget = "ftkv"

// Summary is the median of a label's runs on one target.
type Summary struct {
	Runs      int     `json:"runs"`
	OpsPerSec float64 `json:"ops_per_sec"` // median
	P50       float64 `json:"p50_us"`      // median of the runs' p50
	P99       float64 `json:"p99_us"`      // median of the runs' p99
	Errors    int64   `json:"errors"`      // all runs
}

// CompareRow compares ftkv with one reference target on one workload.
type CompareRow struct {
	Label    string  `json:"label"`
	Ref      string  `json:"ref"` // reference target, e.g. "redis" or "redis+wait"; "" if none ran
	FTKV     Summary `json:"ftkv"`
	Other    Summary `json:"other"`
	Ratio    float64 `json:"ratio"`     // ftkv ops/s ÷ reference ops/s; 0 if either is missing
	P99Ratio float64 `json:"p99_ratio"` // ftkv p99 ÷ reference p99; 0 if either is missing
}

// ReadResults reads results written by `bench -json`, one per line;
// blank lines are skipped.
func ReadResults(r io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var res Result
		if err := json.Unmarshal([]byte(text), &res); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

func summarize(rs []Result) Summary {
	s := Summary{Runs: len(rs)}
	var ops, p50, p99 []float64
	for _, r := range rs {
		ops = append(ops, r.OpsPerSec)
		p50 = append(p50, float64(r.Latency.P50))
		p99 = append(p99, float64(r.Latency.P99))
		s.Errors += r.Errors + r.ConnectErrors
	}
	s.OpsPerSec, s.P50, s.P99 = Median(ops), Median(p50), Median(p99)
	return s
}

func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

// Compare folds results into rows: per label (in the order they first
// appear), one row per reference target (likewise), ftkv's medians against
// the reference's. A label without a reference gets one row with Ref "".
// A reference that kept its operations in flight another way than ftkv's
// runs of the label did is named with its way, e.g. "redis P16" beside
// ftkv's goroutines (see shapeOf).
func Compare(results []Result) []CompareRow {
	type key struct{ label, target string }
	ftkvShape := map[string]string{}
	for _, r := range results {
		if _, ok := ftkvShape[r.Label]; !ok && r.Target == FTKVTarget {
			ftkvShape[r.Label] = shapeOf(r)
		}
	}
	var labels []string
	targets := map[string][]string{}
	runs := map[key][]Result{}
	for _, r := range results {
		if f, ok := ftkvShape[r.Label]; ok && r.Target != FTKVTarget && shapeOf(r) != f {
			r.Target += " " + shapeOf(r)
		}
		k := key{r.Label, r.Target}
		if _, ok := targets[r.Label]; !ok {
			labels = append(labels, r.Label)
			targets[r.Label] = nil
		}
		if _, ok := runs[k]; !ok && r.Target != FTKVTarget {
			targets[r.Label] = append(targets[r.Label], r.Target)
		}
		runs[k] = append(runs[k], r)
	}
	var rows []CompareRow
	for _, l := range labels {
		f := summarize(runs[key{l, FTKVTarget}])
		refs := targets[l]
		if len(refs) == 0 {
			refs = []string{""}
		}
		for _, t := range refs {
			row := CompareRow{Label: l, Ref: t, FTKV: f}
			if t != "" {
				row.Other = summarize(runs[key{l, t}])
			}
			row.Ratio = ratio(f.OpsPerSec, row.Other.OpsPerSec)
			row.P99Ratio = ratio(f.P99, row.Other.P99)
			rows = append(rows, row)
		}
	}
	return rows
}

// shapeOf says how a run kept operations in flight on each connection:
// "P<depth>" (batches), or "G<goroutines>" sharing it.
func shapeOf(r Result) string {
	if r.Goroutines > 1 {
		return "G" + strconv.Itoa(r.Goroutines)
	}
	return "P" + strconv.Itoa(max(r.Pipeline, 1))
}

// WriteCompareTable prints rows as an aligned table: text columns to the
// left, numbers to the right.
func WriteCompareTable(w io.Writer, rows []CompareRow) error {
	lw, rw := len("workload"), len("vs")
	for _, r := range rows {
		lw, rw = max(lw, len(r.Label)), max(rw, len(refName(r.Ref)))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\t%-*s\truns\tftkv ops/s\tother ops/s\tratio\tftkv p50\tother p50\tftkv p99\tother p99\tp99 ratio\t\n",
		lw, "workload", rw, "vs")
	for _, r := range rows {
		fmt.Fprintf(tw, "%-*s\t%-*s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			lw, r.Label, rw, refName(r.Ref), r.FTKV.Runs, r.Other.Runs,
			FormatRate(r.FTKV.OpsPerSec), FormatRate(r.Other.OpsPerSec), ratioText(r.Ratio),
			FormatMicros(int64(r.FTKV.P50)), FormatMicros(int64(r.Other.P50)),
			FormatMicros(int64(r.FTKV.P99)), FormatMicros(int64(r.Other.P99)), ratioText(r.P99Ratio))
	}
	return tw.Flush()
}

func refName(ref string) string {
	if ref == "" {
		return "(none)"
	}
	return ref
}

func ratioText(v float64) string {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// CheckCompare verifies the rows hold numbers (not their size): both sides
// ran, answered operations and have a ratio. It returns every problem.
func CheckCompare(rows []CompareRow) error {
	if len(rows) == 0 {
		return errors.New("no results")
	}
	var errs []error
	for _, r := range rows {
		name := r.Label + " vs " + r.Ref
		switch {
		case r.Ref == "":
			errs = append(errs, fmt.Errorf("%s: no reference run", r.Label))
		case r.FTKV.Runs == 0:
			errs = append(errs, fmt.Errorf("%s: no ftkv run", name))
		case r.FTKV.OpsPerSec <= 0 || r.Other.OpsPerSec <= 0:
			errs = append(errs, fmt.Errorf("%s: zero throughput (ftkv %.0f, %s %.0f ops/s)", name, r.FTKV.OpsPerSec, r.Ref, r.Other.OpsPerSec))
		case r.FTKV.P99 <= 0 || r.Other.P99 <= 0:
			errs = append(errs, fmt.Errorf("%s: no latency", name))
		case !(r.Ratio > 0):
			errs = append(errs, fmt.Errorf("%s: no ratio", name))
		}
	}
	return errors.Join(errs...)
}
