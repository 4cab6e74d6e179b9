package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ftkv/bench"
)

func runArgs(args ...string) (int, string, string) {
	var out, errb strings.Builder
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestHelpNamesModesAndFlags: -help prints on stdout (as the other
// commands do; it went to stderr, so `bench -help | less` showed nothing)
// and names every mode and flag.
func TestHelpNamesModesAndFlags(t *testing.T) {
	code, help, errs := runArgs("-help")
	if code != 0 || errs != "" {
		t.Fatalf("-help: exit %d, stderr %q; want 0 and nothing", code, errs)
	}
	for _, want := range []string{"failover", "reseed", "memory", "compare", "-redis-wait", "-csv", "-chart", "-kill-after",
		"-kills", "-entries", "-victim", "-server-log", "-settle", "-check", "-label", "-interval", "-goroutines", "rueidis"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-mode", "nope"},
		{"-target", "redis", "-kill-after", "1s"},
		{"-mode", "failover"},                   // no -p
		{"-mode", "reseed", "-target", "redis"}, // ftkv only
		{"-mode", "memory", "-p", "1", "-entries", "0"},
		{"-mode", "compare"}, // no files
		{"-p", "1", "-interval", "1us", "-csv", "x.csv"},
		{"-p", "1", "stray"},
		{"-p", "1", "-goroutines", "16", "-P", "16"}, // two ways of pipelining at once
		{"-target", "redis", "-goroutines", "16", "-P", "2"},
		{"-p", "1", "-goroutines", "-1"},
		{"-target", "redis", "-goroutines", "4", "-redis-wait", "1"},
	} {
		code, out, errs := runArgs(args...)
		if code != 2 || out != "" || !strings.HasPrefix(errs, "error: ") || strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want one usage line and 2", args, code, out, errs)
		}
	}
}

func writeResults(t *testing.T, rs ...bench.Result) string {
	t.Helper()
	var b strings.Builder
	for _, r := range rs {
		b.Write(r.JSON())
		b.WriteByte('\n')
	}
	name := filepath.Join(t.TempDir(), "results.jsonl")
	if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func result(label, target string, ops float64, p99 int64) bench.Result {
	return bench.Result{Label: label, Target: target, OpsPerSec: ops, Latency: bench.Latency{P50: p99 / 2, P99: p99}}
}

func TestCompareMode(t *testing.T) {
	f := writeResults(t,
		result("SET c50 P1", "ftkv", 90000, 2000), result("SET c50 P1", "redis", 60000, 1500),
		result("SET c50 P1", "redis+wait", 45000, 3000))
	code, out, errs := runArgs("-mode", "compare", "-check", f)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "1.50x") || !strings.Contains(out, "2.00x") || !strings.Contains(out, "redis+wait") {
		t.Errorf("table:\n%s", out)
	}
	code, out, _ = runArgs("-mode", "compare", "-json", f)
	if code != 0 || !strings.HasPrefix(out, `[{"label":"SET c50 P1","ref":"redis"`) {
		t.Errorf("json: exit %d, %s", code, out)
	}

	g := writeResults(t, result("GET c1 P1", "ftkv", 5000, 300)) // no reference ran
	code, out, errs = runArgs("-mode", "compare", "-check", f, g)
	if code != 1 || !strings.Contains(errs, "GET c1 P1: no reference run") || !strings.Contains(out, "(none)") {
		t.Errorf("check of a missing row: exit %d, stderr %q, out:\n%s", code, errs, out)
	}
	if code, _, _ := runArgs("-mode", "compare", "-check", filepath.Join(t.TempDir(), "missing")); code != 1 {
		t.Errorf("missing file: exit %d", code)
	}
}

func TestWriteSeriesFiles(t *testing.T) {
	dir := t.TempDir()
	res := &bench.Result{Target: "ftkv", Label: "SET", OpsPerSec: 10,
		Series: []bench.Point{{Start: 0, Seconds: 1, Ops: 10, OpsPerSec: 10, P99: 1000}},
		Events: []bench.Event{{At: 0.5, Kind: "kill", Detail: "server 1"}}}
	csvFile, chart := filepath.Join(dir, "s.csv"), filepath.Join(dir, "s.html")
	if err := bench.WriteSeries(res, csvFile, chart); err != nil {
		t.Fatal(err)
	}
	c, _ := os.ReadFile(csvFile)
	if !strings.HasPrefix(string(c), "second,ops_per_sec,") || !strings.Contains(string(c), "kill: server 1") {
		t.Errorf("csv:\n%s", c)
	}
	h, _ := os.ReadFile(chart)
	if !strings.Contains(string(h), "<svg") || !strings.Contains(string(h), "ftkv throughput over time — SET") {
		t.Errorf("chart lacks the plot or title")
	}
	svg := filepath.Join(dir, "s.SVG")
	if err := bench.WriteSeries(res, "", svg); err != nil {
		t.Fatal(err)
	}
	if s, _ := os.ReadFile(svg); !strings.HasPrefix(string(s), "<svg ") {
		t.Errorf("a .svg chart is not a bare SVG: %.40s", s)
	}
	if err := bench.WriteSeries(res, filepath.Join(dir, "no", "such", "dir.csv"), ""); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
	if err := bench.WriteSeries(res, "", ""); err != nil {
		t.Errorf("nothing asked: %v", err)
	}
}
