package metrics

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"ftkv/internal/testkit/promtext"
)

func TestRegistryServesTextFormat(t *testing.T) {
	r := New(false)
	c := r.Counter(`t_ops_total{op="get"}`)
	h := r.Histogram(`t_op_duration_seconds`)
	r.GaugeFunc(`t_epoch`, func() float64 { return 7 })
	r.Writer(func(w io.Writer) { Sample(w, "t_lag_entries", 3, "shard", "1") })
	c.Add(2)
	h.Update(20e-6)
	h.Update(2)
	l, err := Listen("127.0.0.1:0", r, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	resp, err := http.Get("http://" + l.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}
	for _, want := range []string{
		`t_ops_total{op="get"} 2`,
		`t_op_duration_seconds_bucket{le="1e-05"} 0`,
		`t_op_duration_seconds_bucket{le="2.5e-05"} 1`,
		`t_op_duration_seconds_bucket{le="1"} 1`,
		`t_op_duration_seconds_bucket{le="+Inf"} 2`,
		`t_op_duration_seconds_count 2`,
		`t_epoch 7`,
		`t_lag_entries{shard="1"} 3`,
	} {
		if !bytes.Contains(body, []byte(want+"\n")) {
			t.Errorf("missing %q in:\n%s", want, body)
		}
	}
	if resp, err := http.Get("http://" + l.Addr() + "/other"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /other: %v %v", resp.StatusCode, err)
	}
}

// Two registries in one process never share a series (several servers
// run in one test process).
func TestRegistriesAreIndependent(t *testing.T) {
	a, b := New(false), New(false)
	a.Counter(`x_total`).Inc()
	b.Counter(`x_total`)
	var out bytes.Buffer
	b.Write(&out)
	if !strings.Contains(out.String(), "x_total 0\n") {
		t.Fatalf("b: %s", out.String())
	}
}

// TestFamiliesGroupedAndTyped: a scrape carries each family once, its
// samples together after one TYPE line (the text format's rule; strict
// parsers refuse a family that comes back after another). Writers that
// emit one server's series of several families, then the next server's,
// interleaved them, and no family had a TYPE line.
func TestFamiliesGroupedAndTyped(t *testing.T) {
	r := New(true)
	r.Counter(`t_ops_total{op="get"}`).Inc()
	r.Histogram(`t_op_duration_seconds`).Update(1e-3)
	r.GaugeFunc(`t_epoch`, func() float64 { return 7 })
	r.GaugeFunc(`t_refused_total`, func() float64 { return 1 }) // a counter read at the scrape
	r.Writer(func(w io.Writer) {
		for _, s := range []string{"0", "1"} {
			Sample(w, "t_keys", 3, "server", s)
			Sample(w, "t_log_bytes", 10, "server", s)
		}
	})
	var out bytes.Buffer
	r.Write(&out)
	for _, p := range promtext.Check(out.String(), map[string]string{
		"t_ops_total": "counter", "t_op_duration_seconds": "histogram", "t_epoch": "gauge",
		"t_keys": "gauge", "t_log_bytes": "gauge", "go_gc_duration_seconds": "summary", "t_refused_total": "counter",
	}) {
		t.Error(p)
	}
	if !strings.Contains(out.String(), "t_keys{server=\"0\"} 3\nt_keys{server=\"1\"} 3\n") {
		t.Errorf("t_keys's samples are not together:\n%s", out.String())
	}
}

// TestEveryFamilyHasHelp: an ftkv family without a HELP text is one a
// dashboard author must guess at (promtool check metrics: "no help
// text"); the texts live in help.
func TestEveryFamilyHasHelp(t *testing.T) {
	r := New(false)
	r.Counter(`ftkv_server_ops_total{op="get",outcome="ok"}`).Inc()
	r.Writer(func(w io.Writer) { Sample(w, "ftkv_server_keys", 1, "shard", "0", "role", "primary") })
	var out bytes.Buffer
	r.Write(&out)
	for _, want := range []string{
		"# HELP ftkv_server_ops_total " + help["ftkv_server_ops_total"] + "\n",
		"# HELP ftkv_server_keys " + help["ftkv_server_keys"] + "\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
	for name, text := range help {
		if text == "" || strings.ContainsAny(text, "\\\n") {
			t.Errorf("%s: help %q (empty, or a character the format escapes)", name, text)
		}
	}
}
