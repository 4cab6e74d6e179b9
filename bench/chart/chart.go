// Package chart draws a load run's time series: a self-contained HTML
// page (inline SVG, no script, no external resource) or a bare SVG image
// with throughput per interval over time, the p99 latency per interval on
// a second axis, and a vertical marker per event.
package chart

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Point is one interval of the series.
type Point struct {
	Start     float64 // seconds from the start of the measured phase
	Seconds   float64 // length of the interval
	Ops       int64   // operations answered in it (no latency point when 0)
	OpsPerSec float64
	P99       int64 // microseconds
}

// Event is a marker: something that happened At seconds into the phase.
type Event struct {
	At     float64
	Kind   string // "kill", "writable" and "recovered" have colours of their own
	Detail string
}

func (e Event) text() string {
	if e.Detail == "" {
		return e.Kind
	}
	return e.Kind + ": " + e.Detail
}

// Chart geometry.
const (
	chartW     = 960
	chartH     = 420
	chartLeft  = 80
	chartRight = 80
	chartTop   = 40
	chartBot   = 50
)

// NiceTicks returns round tick values from 0 to at least max (about n
// ticks; steps of 1, 2 or 5 times a power of ten). max <= 0 gives [0, 1].
func NiceTicks(hi float64, n int) []float64 {
	if !(hi > 0) || math.IsInf(hi, 0) {
		return []float64{0, 1}
	}
	n = min(max(n, 1), 20)
	raw := hi / float64(n)
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step := pow
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= raw {
			step = m * pow
			break
		}
	}
	var ticks []float64
	for v := 0.0; ; v += step {
		v = math.Round(v/step) * step // no drift
		ticks = append(ticks, v)
		if v >= hi {
			return ticks
		}
	}
}

// tickLabel renders a tick value compactly: 1500 -> "1.5k", 2000000 -> "2M".
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return trimZeros(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case a >= 1e3:
		return trimZeros(fmt.Sprintf("%.2f", v/1e3)) + "k"
	default:
		return trimZeros(fmt.Sprintf("%.3f", v))
	}
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// WriteHTML writes the page of a run's series to w. title heads the page;
// notes are extra lines printed under it (workload, outcome).
func WriteHTML(w io.Writer, title string, notes []string, points []Point, events []Event) error {
	var b strings.Builder
	esc := html.EscapeString
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n")
	fmt.Fprintf(&b, "<title>%s</title>\n", esc(title))
	b.WriteString("<style>body{font-family:sans-serif;margin:24px;color:#222}" +
		"table{border-collapse:collapse;font-size:14px}td,th{padding:2px 10px;text-align:left}" +
		"p{margin:4px 0}</style>\n</head><body>\n")
	fmt.Fprintf(&b, "<h2>%s</h2>\n", esc(title))
	for _, n := range notes {
		fmt.Fprintf(&b, "<p>%s</p>\n", esc(n))
	}
	b.WriteString(chartSVG(points, events))
	if len(events) > 0 {
		b.WriteString("<h3>Events</h3>\n<table><tr><th>t (s)</th><th>event</th><th>detail</th></tr>\n")
		for _, e := range events {
			fmt.Fprintf(&b, "<tr><td>%.3f</td><td>%s</td><td>%s</td></tr>\n", e.At, esc(e.Kind), esc(e.Detail))
		}
		b.WriteString("</table>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteSVG writes the chart as a standalone SVG image (for a page
// that embeds images, e.g. Markdown): title and notes above the plot.
func WriteSVG(w io.Writer, title string, notes []string, points []Point, events []Event) error {
	var b strings.Builder
	head := 28 + 18*len(notes)
	fmt.Fprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n",
		chartW, chartH+head, chartW, chartH+head)
	b.WriteString("<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n")
	fmt.Fprintf(&b, "<text x=\"%d\" y=\"20\" font-size=\"16\" font-weight=\"bold\">%s</text>\n", chartLeft, html.EscapeString(title))
	for i, n := range notes {
		fmt.Fprintf(&b, "<text x=\"%d\" y=\"%d\" font-size=\"12\">%s</text>\n", chartLeft, 40+18*i, html.EscapeString(n))
	}
	plot := chartSVG(points, events)
	// Nest the plot below the heading: the same drawing, moved down.
	plot = strings.Replace(plot, "<svg ", fmt.Sprintf("<svg y=\"%d\" ", head), 1)
	b.WriteString(plot)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// eventColor picks a marker colour per kind of event.
func eventColor(kind string) string {
	switch kind {
	case "kill":
		return "#d62728"
	case "writable":
		return "#2ca02c"
	case "recovered":
		return "#1f77b4"
	}
	return "#7f7f7f"
}

// chartSVG draws the plot.
func chartSVG(points []Point, events []Event) string {
	plotW := float64(chartW - chartLeft - chartRight)
	plotH := float64(chartH - chartTop - chartBot)
	tMax := 1.0
	var rateMax, p99Max float64
	for _, p := range points {
		tMax = math.Max(tMax, p.Start+p.Seconds)
		rateMax = math.Max(rateMax, p.OpsPerSec)
		p99Max = math.Max(p99Max, float64(p.P99)/1000)
	}
	for _, e := range events {
		tMax = math.Max(tMax, e.At)
	}
	// The last interval may end a hair past a round duration (operations
	// finishing as the clock stopped): no extra tick for that.
	xt := NiceTicks(tMax*0.99, 10)
	yt := NiceTicks(rateMax, 5)
	lt := NiceTicks(p99Max, 5)
	xMax, yMax, lMax := xt[len(xt)-1], yt[len(yt)-1], lt[len(lt)-1]
	x := func(t float64) float64 { return chartLeft + t/xMax*plotW }
	y := func(v float64) float64 { return chartTop + plotH - v/yMax*plotH }
	ly := func(v float64) float64 { return chartTop + plotH - v/lMax*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-size=\"12\">\n",
		chartW, chartH, chartW, chartH)
	b.WriteString("<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n")
	// Grid and axes.
	for _, v := range yt {
		fmt.Fprintf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", chartLeft, y(v), chartW-chartRight, y(v))
		fmt.Fprintf(&b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" dy=\"4\">%s</text>\n", chartLeft-6, y(v), tickLabel(v))
	}
	for _, v := range lt {
		fmt.Fprintf(&b, "<text x=\"%d\" y=\"%.1f\" dy=\"4\" fill=\"#ff7f0e\">%s</text>\n", chartW-chartRight+6, ly(v), tickLabel(v))
	}
	for _, v := range xt {
		fmt.Fprintf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#f0f0f0\"/>\n", x(v), chartTop, x(v), chartH-chartBot)
		fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x(v), chartH-chartBot+16, tickLabel(v))
	}
	fmt.Fprintf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#999\"/>\n", chartLeft, chartTop, plotW, plotH)
	fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">time (s)</text>\n", chartLeft+plotW/2, chartH-10)
	fmt.Fprintf(&b, "<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\" fill=\"#1f77b4\">ops/s</text>\n", chartTop+plotH/2)
	fmt.Fprintf(&b, "<text transform=\"translate(%d %.1f) rotate(90)\" text-anchor=\"middle\" fill=\"#ff7f0e\">p99 latency (ms)</text>\n", chartW-18, chartTop+plotH/2)

	// Throughput as a step line (each interval's rate held over it), p99 as points joined.
	if len(points) > 0 {
		var tp, lp []string
		for _, p := range points {
			tp = append(tp, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x(p.Start), y(p.OpsPerSec), x(p.Start+p.Seconds), y(p.OpsPerSec)))
			if p.Ops > 0 {
				lp = append(lp, fmt.Sprintf("%.1f,%.1f", x(p.Start+p.Seconds/2), ly(float64(p.P99)/1000)))
			}
		}
		fmt.Fprintf(&b, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"%s\"/>\n", strings.Join(tp, " "))
		if len(lp) > 0 {
			fmt.Fprintf(&b, "<polyline fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\" points=\"%s\"/>\n", strings.Join(lp, " "))
		}
	}
	// Event markers, labels staggered so close events stay readable.
	for i, e := range events {
		c := eventColor(e.Kind)
		fmt.Fprintf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-width=\"1.5\"><title>%s</title></line>\n",
			x(e.At), chartTop, x(e.At), chartH-chartBot, c, html.EscapeString(e.text()))
		fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\" fill=\"%s\">%s %.2fs</text>\n", x(e.At)+3, chartTop+14+14*(i%4), c, html.EscapeString(e.Kind), e.At)
	}
	// Legend.
	fmt.Fprintf(&b, "<text x=\"%d\" y=\"%d\" fill=\"#1f77b4\">— ops/s per interval</text>\n", chartLeft, chartTop-12)
	fmt.Fprintf(&b, "<text x=\"%d\" y=\"%d\" fill=\"#ff7f0e\">- - p99 latency</text>\n", chartLeft+170, chartTop-12)
	b.WriteString("</svg>\n")
	return b.String()
}
