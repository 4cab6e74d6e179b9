package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/client"
	"ftkv/gateway"
	"ftkv/internal/testkit/promtext"
	"ftkv/internal/testkit/testcluster"
)

// scrape is one /metrics answer: every sample by its series (name and
// labels exactly as written, e.g. `a_total{op="get"}`).
type scrape map[string]float64

// get returns the sample of name with the given label pairs (in the
// order the process writes them), 0 when absent.
func (s scrape) get(name string, labels ...string) float64 {
	return s[series(name, labels...)]
}

func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var parts []string
	for i := 0; i+1 < len(labels); i += 2 {
		parts = append(parts, labels[i]+"="+strconv.Quote(labels[i+1]))
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// sum adds every sample of the metric name whose series contains all of
// the label pairs given (`op="put"`).
func (s scrape) sum(name string, match ...string) float64 {
	t := 0.0
	for k, v := range s {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(k, m)
		}
		if ok {
			t += v
		}
	}
	return t
}

// parseText parses the Prometheus text format (comments skipped); a
// malformed line fails the test: Prometheus would refuse the scrape.
func parseText(t *testing.T, r io.Reader) scrape {
	t.Helper()
	out := scrape{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			t.Fatalf("malformed sample line %q", line)
		}
		key, val := line[:i], line[i+1:]
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("malformed value in %q: %v", line, err)
		}
		if _, dup := out[key]; dup {
			t.Fatalf("series %s written twice", key)
		}
		if b := strings.IndexByte(key, '{'); b == 0 || (b > 0 && !strings.HasSuffix(key, "}")) {
			t.Fatalf("malformed series %q", key)
		}
		out[key] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// scrapeTarget scrapes the process at addr: one of the harness's cluster
// (over HTTPS in secure mode), or a URL base ("http://host:port") of a
// process of the test's own.
func scrapeTarget(t *testing.T, addr string) scrape {
	t.Helper()
	cl, scheme := testcluster.MetricsClient(t)
	if strings.HasPrefix(addr, "http://") {
		return scrapeURL(t, &http.Client{Timeout: 5 * time.Second}, addr)
	}
	return scrapeURL(t, cl, scheme+"://"+addr)
}

// scrapeURL is scrapeTarget of the process at base (scheme://host:port)
// with cl.
func scrapeURL(t *testing.T, cl *http.Client, base string) scrape {
	t.Helper()
	addr := base
	resp, err := cl.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape %s: %s, content type %q", addr, resp.Status, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	// Each family in one group after its TYPE line, as strict parsers
	// (OpenMetrics) read the format.
	for _, p := range promtext.Check(string(body), nil) {
		t.Errorf("scrape %s: %s", addr, p)
	}
	return parseText(t, bytes.NewReader(body))
}

type sdTarget struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

func discover(t *testing.T, coordMetrics string) []sdTarget {
	t.Helper()
	cl, scheme := testcluster.MetricsClient(t)
	resp, err := cl.Get(scheme + "://" + coordMetrics + "/sd")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var groups []sdTarget
	if err := json.NewDecoder(resp.Body).Decode(&groups); err != nil {
		t.Fatalf("/sd: %v", err)
	}
	return groups
}

// checkHistogram checks one latency histogram of s: buckets from 10 µs
// to 1 s, cumulative, +Inf equal to the count.
func checkHistogram(t *testing.T, who string, s scrape, name string, labels ...string) {
	t.Helper()
	type bucket struct {
		le float64
		n  float64
	}
	var bs []bucket
	for k, v := range s {
		if !strings.HasPrefix(k, name+"_bucket{") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && strings.Contains(k, labels[i]+"="+strconv.Quote(labels[i+1]))
		}
		if !ok {
			continue
		}
		j := strings.Index(k, `le="`)
		le := k[j+4 : strings.IndexByte(k[j+4:], '"')+j+4]
		f := math.Inf(1)
		if le != "+Inf" {
			var err error
			if f, err = strconv.ParseFloat(le, 64); err != nil {
				t.Fatalf("%s: %s: bad le %q", who, k, le)
			}
		}
		bs = append(bs, bucket{f, v})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) != 17 || bs[0].le != 10e-6 || bs[15].le != 1 {
		t.Fatalf("%s: %s%v: %d buckets %v, want 10µs..1s and +Inf", who, name, labels, len(bs), bs)
	}
	for i := 1; i < len(bs); i++ {
		if bs[i].n < bs[i-1].n {
			t.Fatalf("%s: %s%v: buckets not cumulative: %v", who, name, labels, bs)
		}
	}
	count := s.sum(name+"_count", labels2match(labels)...)
	if bs[16].n != count || count == 0 {
		t.Fatalf("%s: %s%v: +Inf bucket %v, count %v (want equal, > 0)", who, name, labels, bs[16].n, count)
	}
}

func labels2match(labels []string) []string {
	var m []string
	for i := 0; i+1 < len(labels); i += 2 {
		m = append(m, labels[i]+"="+strconv.Quote(labels[i+1]))
	}
	return m
}

// TestMetricsUnderLoad scrapes /metrics from the coordinator, every
// server and a gateway twice while clients write and read (through the Go
// client and, in RESP, through the gateway), and checks what an operator
// would look at: operations and their latency histograms grow, the
// service-discovery document lists every server's target and each
// answers, and a failover shows in the coordinator's counters and the
// re-seeding in the servers'.
func TestMetricsUnderLoad(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Args: []string{"-metrics", "127.0.0.1:0", "-fsync", "no"}})
	st := c.Status(t)
	if len(st.Coordinators) != 1 || st.Coordinators[0].MetricsAddr == "" {
		t.Fatalf("status has no coordinator metrics address: %s", testcluster.StatusJSON(st))
	}
	coordAddr := st.Coordinators[0].MetricsAddr
	targets := map[string]string{"coordinator": coordAddr}
	for _, s := range st.Servers {
		if s.MetricsAddr == "" {
			t.Fatalf("server %d has no metrics_addr: %s", s.ID, testcluster.StatusJSON(st))
		}
		targets[fmt.Sprintf("server %d", s.ID)] = s.MetricsAddr
	}

	// /sd lists the coordinator and every server, with the addresses
	// status shows.
	groups := discover(t, coordAddr)
	listed := map[string]string{}
	for _, g := range groups {
		if len(g.Targets) != 1 || g.Labels["job"] != "ftkv" {
			t.Fatalf("/sd group %+v: want one target and job=ftkv", g)
		}
		who := g.Labels["ftkv_role"]
		if who == "server" {
			who += " " + g.Labels["ftkv_server"]
		}
		listed[who] = g.Targets[0]
	}
	for who, addr := range targets {
		if listed[who] != addr {
			t.Fatalf("/sd lists %s at %q, status says %q (all: %v)", who, listed[who], addr, listed)
		}
	}

	// The start-up's spawns count as spawns (the core decides only the
	// later ones).
	started := scrapeTarget(t, coordAddr)
	if n := started.get("ftkv_coord_views_published_total", "why", "start"); n != 1 {
		// (The first view is committed by the start, not by a decision
		// of the core: it was not counted, and a cluster that had a view
		// showed none published.)
		t.Errorf("ftkv_coord_views_published_total{why=\"start\"} = %v after the start, want 1", n)
	}
	if n := started.get("ftkv_coord_actions_total", "action", "spawn"); n < 3 {
		t.Errorf("ftkv_coord_actions_total{action=\"spawn\"} = %v after starting 3 servers", n)
	}

	// A gateway, as bin/gateway -metrics runs it (gateways are not in
	// /sd: the coordinator does not know them).
	respAddr, gwMetrics := metricsGateway(t, c)
	targets["gateway"] = "http://" + gwMetrics // (the test's own: no TLS)

	// Load: writers and readers over a few thousand keys, and a Redis
	// client through the gateway.
	cl := c.Client()
	ctx, cancel := context.WithCancel(context.Background())
	var puts, gets atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k := fmt.Sprintf("m-%d-%d", w, i%300)
				if i%3 == 2 {
					// The key written just before: found.
					if _, err := cl.Get(ctx, fmt.Sprintf("m-%d-%d", w, (i-1)%300)); err == nil {
						gets.Add(1)
					}
					continue
				}
				if err := cl.Put(ctx, k, []byte("value")); err == nil {
					puts.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		nc, err := net.Dial("tcp", respAddr)
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		go func() { <-ctx.Done(); nc.Close() }()
		br := bufio.NewReader(nc)
		for i := 0; ctx.Err() == nil; i++ {
			k, v := fmt.Sprintf("g-%d", i%100), fmt.Sprintf("v%d", i)
			fmt.Fprintf(nc, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k, len(v), v, len(k), k)
			ok, err1 := br.ReadString('\n')
			bulk, err2 := br.ReadString('\n')
			got, err3 := br.ReadString('\n')
			if err1 != nil || err2 != nil || err3 != nil {
				return // the load stopped
			}
			if ok != "+OK\r\n" || bulk != fmt.Sprintf("$%d\r\n", len(v)) || got != v+"\r\n" {
				t.Errorf("gateway answered %q %q %q to SET/GET %s %s", ok, bulk, got, k, v)
				return
			}
		}
	}()
	stopLoad := func() {
		cancel()
		wg.Wait()
	}
	defer stopLoad()
	waitOps := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for puts.Load() < n && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if puts.Load() < n {
			t.Fatalf("only %d puts acknowledged", puts.Load())
		}
	}
	waitOps(2000)
	first := map[string]scrape{}
	for who, addr := range targets {
		first[who] = scrapeTarget(t, addr)
	}
	firstAt := time.Now()
	waitOps(puts.Load() + 2000)
	// Heartbeats come every -t/5 (100 ms): 2,000 puts can take less, and
	// the coordinator's count then did not move between the scrapes.
	time.Sleep(500*time.Millisecond - time.Since(firstAt))
	second := map[string]scrape{}
	for who, addr := range targets {
		second[who] = scrapeTarget(t, addr)
	}

	checkDashboard(t, second)

	var putsSeen float64
	for who := range targets {
		a, b := first[who], second[who]
		if who == "gateway" {
			for _, cmd := range []string{"set", "get"} {
				ca, cb := a.get("ftkv_gateway_commands_total", "cmd", cmd, "outcome", "ok"), b.get("ftkv_gateway_commands_total", "cmd", cmd, "outcome", "ok")
				if cb <= ca {
					t.Fatalf("gateway: %s commands did not move: %v -> %v", cmd, ca, cb)
				}
				checkHistogram(t, who, b, "ftkv_gateway_command_duration_seconds", "cmd", cmd)
			}
			if b.get("ftkv_gateway_connections") < 1 {
				t.Fatalf("gateway: %v connections", b.get("ftkv_gateway_connections"))
			}
			continue
		}
		if who == "coordinator" {
			if b.get("ftkv_coord_heartbeats_total") <= a.get("ftkv_coord_heartbeats_total") {
				t.Fatalf("coordinator heartbeats did not move: %v -> %v", a.get("ftkv_coord_heartbeats_total"), b.get("ftkv_coord_heartbeats_total"))
			}
			if b.get("ftkv_coord_view_epoch") == 0 || b.get("ftkv_coord_servers", "state", "serving") != 3 || b.get("ftkv_coord_leader") != 1 {
				t.Fatalf("coordinator: epoch %v, serving %v, leader %v", b.get("ftkv_coord_view_epoch"), b.get("ftkv_coord_servers", "state", "serving"), b.get("ftkv_coord_leader"))
			}
			if b.get("go_goroutines") == 0 || b.get("process_resident_memory_bytes") == 0 {
				t.Fatal("coordinator: no process metrics")
			}
			continue
		}
		for _, op := range []string{"put", "get"} {
			pa, pb := a.get("ftkv_server_ops_total", "op", op, "outcome", "ok"), b.get("ftkv_server_ops_total", "op", op, "outcome", "ok")
			if pb <= pa {
				t.Fatalf("%s: ftkv_server_ops_total{op=%q,outcome=\"ok\"} did not move: %v -> %v", who, op, pa, pb)
			}
			ca, cb := a.get("ftkv_server_op_duration_seconds_count", "op", op), b.get("ftkv_server_op_duration_seconds_count", "op", op)
			if cb <= ca {
				t.Fatalf("%s: %s latency histogram did not fill: %v -> %v", who, op, ca, cb)
			}
			checkHistogram(t, who, b, "ftkv_server_op_duration_seconds", "op", op)
		}
		putsSeen += b.get("ftkv_server_ops_total", "op", "put", "outcome", "ok")
		if b.sum("ftkv_server_log_index", `role="primary"`) <= a.sum("ftkv_server_log_index", `role="primary"`) {
			t.Fatalf("%s: the primary's log index did not move", who)
		}
		if b.sum("ftkv_server_keys", `role="primary"`) == 0 || b.sum("ftkv_server_keys", `role="secondary"`) == 0 {
			t.Fatalf("%s: no keys reported", who)
		}
		if b.get("ftkv_server_client_connections") == 0 || b.get("ftkv_server_dedup_sessions") == 0 || b.get("ftkv_server_dedup_records") == 0 {
			t.Fatalf("%s: connections %v, sessions %v, records %v", who, b.get("ftkv_server_client_connections"),
				b.get("ftkv_server_dedup_sessions"), b.get("ftkv_server_dedup_records"))
		}
		if b.get("ftkv_server_wal_bytes") == 0 {
			t.Fatalf("%s: log size 0 with a write-ahead log", who)
		}
		if b.get("ftkv_server_view_epoch") != second["coordinator"].get("ftkv_coord_view_epoch") {
			t.Fatalf("%s: view epoch %v, the coordinator's %v", who, b.get("ftkv_server_view_epoch"), second["coordinator"].get("ftkv_coord_view_epoch"))
		}
	}
	// Every acknowledged put was answered OK by some primary (retries
	// may add answers, never remove them): the counters are not sampled.
	if acked := puts.Load(); putsSeen < float64(acked)-float64(16) && putsSeen < 4000 {
		t.Fatalf("servers counted %v put answers by the second scrape, %d acknowledged before it", putsSeen, acked)
	}

	// A failover and a re-seeding show in the counters.
	before := scrapeTarget(t, coordAddr)
	v := c.KillServer(t, 1)
	after := c.WaitRecovered(t, 30*time.Second, v)
	stopLoad()
	cs := scrapeTarget(t, coordAddr)
	if cs.get("ftkv_coord_views_published_total", "why", "failover") <= before.get("ftkv_coord_views_published_total", "why", "failover") {
		t.Fatalf("failover not counted: %v -> %v", before.get("ftkv_coord_views_published_total", "why", "failover"), cs.get("ftkv_coord_views_published_total", "why", "failover"))
	}
	if cs.get("ftkv_coord_actions_total", "action", "spawn") <= before.get("ftkv_coord_actions_total", "action", "spawn") {
		t.Fatal("respawn not counted")
	}
	// The respawned server has a new metrics address, listed in /sd.
	var reseeds float64
	for _, s := range after.Servers {
		found := false
		for _, g := range discover(t, coordAddr) {
			found = found || (g.Targets[0] == s.MetricsAddr && g.Labels["ftkv_server"] == strconv.Itoa(s.ID))
		}
		if !found {
			t.Fatalf("/sd does not list server %d at %s after the respawn", s.ID, s.MetricsAddr)
		}
		m := scrapeTarget(t, s.MetricsAddr)
		reseeds += m.get("ftkv_server_reseeds_total", "outcome", "ok")
		if p := m.get("ftkv_server_reseed_progress_ratio"); p != 1 {
			t.Fatalf("server %d: re-seed progress %v after recovery, want 1", s.ID, p)
		}
	}
	if reseeds == 0 {
		t.Fatal("no re-seeding counted by the respawned server's primaries")
	}
}

// checkDashboard fails the test for every metric the Grafana dashboard
// (docs/grafana/ftkv.json) queries that no process serves: a renamed
// metric leaves its panel empty without an error anywhere.
func checkDashboard(t *testing.T, scrapes map[string]scrape) {
	t.Helper()
	raw, err := os.ReadFile("../../docs/grafana/ftkv.json")
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if e, ok := x.(string); ok && k == "expr" {
					exprs = append(exprs, e)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana/ftkv.json: %v", err)
	}
	walk(dash)
	served := map[string]bool{}
	for _, s := range scrapes {
		for k := range s {
			if i := strings.IndexByte(k, '{'); i >= 0 {
				k = k[:i]
			}
			served[k] = true
		}
	}
	// Label lists (`by (le, ftkv_server)`) name labels, not metrics.
	labelList := regexp.MustCompile(`\b(by|without)\s*\([^)]*\)`)
	name := regexp.MustCompile(`\bftkv_[a-z0-9_]+`)
	checked := 0
	for _, e := range exprs {
		for _, m := range name.FindAllString(labelList.ReplaceAllString(e, ""), -1) {
			checked++
			if !served[m] {
				t.Errorf("the dashboard queries %s (%s), which no process serves", m, e)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("found only %d metric names in the dashboard's %d queries", checked, len(exprs))
	}
}

// metricsGateway runs a gateway over c in this process with its metrics
// served as bin/gateway -metrics serves them; it returns the RESP and the
// metrics addresses.
func metricsGateway(t *testing.T, c *testcluster.Cluster, tune ...func(*gateway.Config)) (resp, metricsAddr string) {
	t.Helper()
	cl := c.Client(client.WithConnsPerServer(2))
	met := gateway.NewMetrics()
	cfg := gateway.Config{Store: cl, Listen: "127.0.0.1:0", Observe: met.Observe, OnLogin: met.Login,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	for _, f := range tune {
		f(&cfg)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	met.Attach(g)
	ml, err := met.Listen("127.0.0.1:0", cfg.TLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ml.Close()
		_ = g.Close(ctx)
		cl.Close()
	})
	return g.Addr(), ml.Addr()
}

// TestCoordGroupServiceDiscoveryOnFollowers: every coordinator of a group
// lists the servers in /sd, at the metrics addresses status shows, the
// followers as the leader: Prometheus may be pointed at any of them.
// Before, a follower listed only itself (a contract check).
func TestCoordGroupServiceDiscoveryOnFollowers(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Coordinators: groupCoords, Args: []string{"-metrics", "127.0.0.1:0"}})
	st := c.WaitRecovered(t, recoverTimeout)
	want := map[string]string{}
	for _, s := range st.Servers {
		if s.MetricsAddr == "" {
			t.Fatalf("server %d has no metrics_addr: %s", s.ID, testcluster.StatusJSON(st))
		}
		want[fmt.Sprint(s.ID)] = s.MetricsAddr
	}
	followers := 0
	for k := range groupCoords {
		cst, err := c.CoordStatus(k)
		if err != nil {
			t.Fatal(err)
		}
		me := ""
		for _, co := range cst.Coordinators {
			if co.ID == k {
				me = co.MetricsAddr
				if co.Role == "follower" {
					followers++
				}
			}
		}
		if me == "" {
			t.Fatalf("coordinator %d shows no metrics address of its own: %s", k, testcluster.StatusJSON(cst))
		}
		got := map[string]string{}
		for _, g := range discover(t, me) {
			if g.Labels["ftkv_role"] == "server" && len(g.Targets) == 1 {
				got[g.Labels["ftkv_server"]] = g.Targets[0]
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("coordinator %d's /sd lists servers %v, status shows %v", k, got, want)
		}
	}
	if followers == 0 {
		t.Fatal("no coordinator said it was a follower")
	}
}
