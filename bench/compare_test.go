package bench

import (
	"strings"
	"testing"
)

func res(label, target string, ops float64, p50, p99 int64) Result {
	return Result{Label: label, Target: target, OpsPerSec: ops, Latency: Latency{P50: p50, P99: p99}}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{5}, 5}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %g, want %g", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Errorf("Median sorted its input")
			}
		}
	}
}

func TestPercentile(t *testing.T) {
	vs := make([]float64, 20)
	for i := range vs {
		vs[i] = float64(20 - i) // 20 .. 1
	}
	for p, want := range map[float64]float64{50: 10, 99: 20, 100: 20, 95: 19, 1: 1, 0: 1} {
		if got := Percentile(vs, p); got != want {
			t.Errorf("p%g of 1..20 = %g, want %g", p, got, want)
		}
	}
	if Percentile(nil, 50) != 0 || vs[0] != 20 {
		t.Error("empty percentile or input modified")
	}
}

func TestCompare(t *testing.T) {
	in := []Result{
		res("SET c50 P1", "ftkv", 100, 500, 2000),
		res("SET c50 P1", "redis", 80, 400, 1000),
		res("SET c50 P1", "redis+wait", 50, 900, 4000),
		res("SET c50 P1", "ftkv", 120, 450, 1900),
		res("SET c50 P1", "redis", 90, 410, 1100),
		res("SET c50 P1", "ftkv", 90, 550, 2100),
		res("SET c50 P1", "redis", 70, 420, 1200),
		res("GET c50 P1", "redis", 100, 300, 900),
		res("GET c50 P1", "ftkv", 200, 200, 600),
		res("only ftkv", "ftkv", 1, 1, 1),
	}
	rows := Compare(in)
	if len(rows) != 4 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	r := rows[0]
	if r.Label != "SET c50 P1" || r.Ref != "redis" || r.FTKV.Runs != 3 || r.Other.Runs != 3 {
		t.Fatalf("row 0 = %+v", r)
	}
	if r.FTKV.OpsPerSec != 100 || r.Other.OpsPerSec != 80 || r.Ratio != 1.25 {
		t.Errorf("row 0 medians %g / %g ratio %g, want 100 / 80 = 1.25", r.FTKV.OpsPerSec, r.Other.OpsPerSec, r.Ratio)
	}
	if r.FTKV.P99 != 2000 || r.Other.P99 != 1100 || r.FTKV.P50 != 500 {
		t.Errorf("row 0 latency medians %+v %+v", r.FTKV, r.Other)
	}
	if r := rows[1]; r.Ref != "redis+wait" || r.Ratio != 2 || r.P99Ratio != 0.5 || r.Other.Runs != 1 {
		t.Errorf("row 1 = %+v", r)
	}
	if r := rows[2]; r.Label != "GET c50 P1" || r.Ref != "redis" || r.Ratio != 2 {
		t.Errorf("row 2 = %+v", r)
	}
	if r := rows[3]; r.Ref != "" || r.Ratio != 0 || r.FTKV.Runs != 1 {
		t.Errorf("row 3 = %+v", r)
	}

	var b strings.Builder
	if err := WriteCompareTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	table := b.String()
	for _, want := range []string{"workload", "ratio", "1.25x", "2.00x", "redis+wait", "(none)", "3/3", "2.00ms", "1.10ms"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 5 {
		t.Errorf("table has %d lines:\n%s", len(lines), table)
	}

	err := CheckCompare(rows)
	if err == nil || !strings.Contains(err.Error(), "only ftkv: no reference run") {
		t.Errorf("CheckCompare = %v, want the missing reference", err)
	}
	if err := CheckCompare(rows[:3]); err != nil {
		t.Errorf("CheckCompare of complete rows = %v", err)
	}
	if err := CheckCompare(nil); err == nil {
		t.Error("CheckCompare of nothing passed")
	}
	zero := Compare([]Result{res("x", "ftkv", 0, 0, 0), res("x", "redis", 5, 1, 1)})
	if err := CheckCompare(zero); err == nil || !strings.Contains(err.Error(), "zero throughput") {
		t.Errorf("CheckCompare with zero ops = %v", err)
	}
	noFTKV := Compare([]Result{res("x", "redis", 5, 1, 1)})
	if err := CheckCompare(noFTKV); err == nil || !strings.Contains(err.Error(), "no ftkv run") {
		t.Errorf("CheckCompare without ftkv = %v", err)
	}
}

func TestReadResults(t *testing.T) {
	a, b := res("L", "ftkv", 10, 1, 2), res("L", "redis", 20, 1, 2)
	in := string(a.JSON()) + "\n\n" + string(b.JSON()) + "\n"
	got, err := ReadResults(strings.NewReader(in))
	if err != nil || len(got) != 2 || got[1].Target != "redis" || got[0].Label != "L" || got[0].OpsPerSec != 10 {
		t.Fatalf("ReadResults = %+v, %v", got, err)
	}
	if _, err := ReadResults(strings.NewReader("{}\nnot json\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: %v", err)
	}
}
