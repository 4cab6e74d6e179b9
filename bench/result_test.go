package bench

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func TestFormatMicros(t *testing.T) {
	tests := []struct {
		us   int64
		want string
	}{
		{0, "0µs"},
		{87, "87µs"},
		{999, "999µs"},
		{1000, "1.00ms"},
		{1250, "1.25ms"},
		{12345, "12.3ms"},
		{123456, "123ms"},
		{999_499, "999ms"},
		{999_500, "1.00s"},
		{2_500_000, "2.50s"},
		{61_000_000, "61.0s"},
	}
	for _, tt := range tests {
		if got := FormatMicros(tt.us); got != tt.want {
			t.Errorf("FormatMicros(%d) = %q, want %q", tt.us, got, tt.want)
		}
	}
}

func TestFormatRate(t *testing.T) {
	tests := map[float64]string{0: "0", 999.4: "999", 999.5: "1,000", 86123.4: "86,123", 1234567: "1,234,567"}
	for v, want := range tests {
		if got := FormatRate(v); got != want {
			t.Errorf("FormatRate(%g) = %q, want %q", v, got, want)
		}
	}
}

func TestLatencyOf(t *testing.T) {
	if l := LatencyOf(newHistogram()); l != (Latency{}) {
		t.Fatalf("empty histogram: %+v", l)
	}
	h := newHistogram()
	for v := int64(1); v <= 10000; v++ { // 1..10000µs, uniform
		h.RecordValue(v)
	}
	l := LatencyOf(h)
	near := func(got, want int64) bool { return got >= want-want/100 && got <= want+want/100 }
	if !near(l.P50, 5000) || !near(l.P90, 9000) || !near(l.P99, 9900) || !near(l.P999, 9990) || !near(l.Max, 10000) {
		t.Fatalf("percentiles of 1..10000: %+v", l)
	}
	// Merging per-requester histograms is what Run does.
	a, b := newHistogram(), hdrhistogram.New(histMin, histMax, histDigits)
	a.RecordValue(100)
	b.RecordValue(300)
	a.Merge(b)
	if l := LatencyOf(a); l.Max != 300 || l.P50 != 100 {
		t.Fatalf("merged: %+v", l)
	}
}

func sampleResult() *Result {
	return &Result{
		Target: "redis", Addr: "127.0.0.1:6379", Connections: 50, Pipeline: 1, ValueSize: 100, Keys: 100000,
		Ratio: 0.5, Seed: 7, Ops: 1000, Gets: 600, Puts: 400, Misses: 3, Seconds: 2,
		OpsPerSec: 500, GetsPerSec: 300, PutsPerSec: 200,
		Latency:    Latency{P50: 410, P90: 800, P99: 1500, P999: 3000, Max: 12000},
		GetLatency: Latency{P50: 400}, PutLatency: Latency{P50: 420},
		Preload: &PreloadResult{Keys: 100000, Seconds: 1.5, PutsPerSec: 66666.7},
	}
}

func TestJSONFields(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(sampleResult().JSON(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"target", "ops", "seconds", "ops_per_sec", "gets_per_sec", "puts_per_sec", "errors",
		"latency_us", "connections", "pipeline", "value_size", "keys", "ratio", "preload", "seed"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	lat, _ := m["latency_us"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency_us lacks %q", k)
		}
	}
	if lat["p999"] != float64(3000) || m["ops_per_sec"] != float64(500) {
		t.Errorf("values: %v", m)
	}
}

func TestWriteText(t *testing.T) {
	var b strings.Builder
	if err := sampleResult().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"target      redis 127.0.0.1:6379",
		"50 connections, pipeline 1, 100 B values, 100000 keys, 50% gets, seed 7",
		"preload     100000 keys in 1.50s (66,667 puts/s)",
		"throughput  500 ops/s  (gets 300/s, puts 200/s)",
		"1000 in 2.00s: 600 gets (3 misses), 400 puts, 0 errors",
		"p50 410µs  p90 800µs  p99 1.50ms  p99.9 3.00ms  max 12.0ms",
		"  get       p50 400µs",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "first error") {
		t.Errorf("text mentions an error that did not happen:\n%s", out)
	}
}

func TestWriteTextInterruptedPreload(t *testing.T) {
	r := sampleResult()
	r.Preload.Interrupted = true
	var b strings.Builder
	r.WriteText(&b)
	if out := b.String(); !strings.Contains(out, "not started") || strings.Contains(out, "throughput") {
		t.Fatalf("an interrupted preload reports a measurement:\n%s", out)
	}
}
