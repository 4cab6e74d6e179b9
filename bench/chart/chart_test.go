package chart

import (
	"strings"
	"testing"
)

func TestNiceTicks(t *testing.T) {
	cases := []struct {
		hi   float64
		n    int
		want []float64
	}{
		{10, 5, []float64{0, 2, 4, 6, 8, 10}},
		{87000, 5, []float64{0, 20000, 40000, 60000, 80000, 100000}},
		{9.3, 10, []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{0.7, 5, []float64{0, 0.2, 0.4, 0.6000000000000001, 0.8}},
		{0, 5, []float64{0, 1}},
		{-3, 5, []float64{0, 1}},
		{1, 0, []float64{0, 1}},
	}
	for _, c := range cases {
		got := NiceTicks(c.hi, c.n)
		if len(got) != len(c.want) {
			t.Errorf("NiceTicks(%g, %d) = %v, want %v", c.hi, c.n, got, c.want)
			continue
		}
		for i := range got {
			if d := got[i] - c.want[i]; d > 1e-9 || d < -1e-9 {
				t.Errorf("NiceTicks(%g, %d) = %v, want %v", c.hi, c.n, got, c.want)
				break
			}
		}
		if got[len(got)-1] < c.hi {
			t.Errorf("NiceTicks(%g) ends below it: %v", c.hi, got)
		}
	}
}

func TestTickLabel(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.5: "0.5", 12: "12", 1500: "1.5k", 20000: "20k", 2e6: "2M", 1.25e6: "1.25M"} {
		if got := tickLabel(v); got != want {
			t.Errorf("tickLabel(%g) = %q, want %q", v, got, want)
		}
	}
}

func TestWriteChart(t *testing.T) {
	pts := []Point{
		{Start: 0, Seconds: 1, Ops: 80000, OpsPerSec: 80000, P99: 2000},
		{Start: 1, Seconds: 1, Ops: 20000, OpsPerSec: 20000, P99: 400000},
		{Start: 2, Seconds: 1, Ops: 0},
		{Start: 3, Seconds: 1, Ops: 85000, OpsPerSec: 85000, P99: 1800},
	}
	evs := []Event{{At: 1.2, Kind: "kill", Detail: "server <1>"}, {At: 1.5, Kind: "writable"}}
	var b strings.Builder
	if err := WriteHTML(&b, "ftkv & co", []string{"50 connections"}, pts, evs); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"<!DOCTYPE html>", "<svg", "</svg>", "ftkv &amp; co", "server &lt;1&gt;",
		"<polyline", "stroke-dasharray", eventColor("kill"), eventColor("writable"), "kill 1.20s", "50 connections", "</html>"} {
		if !strings.Contains(page, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	// Self-contained: no script, no resource fetched from elsewhere.
	for _, bad := range []string{"<script", "src=", "href=", "<link", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("chart contains %q", bad)
		}
	}
	if strings.Count(page, "http://") != 1 { // the SVG namespace only
		t.Errorf("chart names %d URLs", strings.Count(page, "http://"))
	}
	// An empty series still draws axes.
	b.Reset()
	if err := WriteHTML(&b, "empty", nil, nil, nil); err != nil || !strings.Contains(b.String(), "</svg>") {
		t.Fatalf("empty chart: %v", err)
	}
}

func TestWriteSVG(t *testing.T) {
	var b strings.Builder
	pts := []Point{{Start: 0, Seconds: 1, Ops: 5, OpsPerSec: 5, P99: 100}}
	if err := WriteSVG(&b, "a <b>", []string{"n1", "n2"}, pts, []Event{{At: 0.5, Kind: "kill"}}); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	if !strings.HasPrefix(svg, "<svg ") || !strings.HasSuffix(svg, "</svg>\n") || strings.Count(svg, "<svg ") != 2 ||
		!strings.Contains(svg, `<svg y="64" `) || !strings.Contains(svg, "a &lt;b&gt;") || !strings.Contains(svg, ">n2</text>") {
		t.Errorf("svg:\n%s", svg)
	}
	if strings.Contains(svg, "<html") || strings.Contains(svg, "<script") {
		t.Error("svg is a page or has a script")
	}
}
