package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"ftkv/gateway"
	"ftkv/internal/testkit/testcluster"
	"ftkv/internal/tlsconf"
)

// TestTLSMetrics: with TLS configured, every process serves /metrics
// (and the coordinator /sd) over HTTPS with its own certificate, as etcd
// and CockroachDB do in secure mode: a scraper trusting the cluster's CA
// reads them, /sd tells Prometheus the scheme (__scheme__ https), and a
// scraper in clear gets no metrics. A review found them served in clear
// on a cluster whose every other link was TLS.
func TestTLSMetrics(t *testing.T) {
	p := newTLSPKI(t)
	c := startTLSClusterWith(t, 3, p, testcluster.Options{Args: []string{"-metrics", "127.0.0.1:0"}})
	st := c.WaitRecovered(t, 10*time.Second)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := cl.Put(ctx, "tls-metrics", []byte("v")); err != nil {
		t.Fatal(err)
	}
	cancel()

	// A gateway whose ports speak TLS (bin/gateway -tls-cert) serves its
	// metrics the same way.
	m, err := tlsconf.Load(tlsconf.Files{CA: p.file("ca.pem"), Cert: p.file("server.pem"), Key: p.file("server-key.pem")}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, gwMetrics := metricsGateway(t, c, func(cfg *gateway.Config) { cfg.TLS = m.Server(false) })

	ca, err := os.ReadFile(p.file("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	secure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	plain := &http.Client{Timeout: 5 * time.Second}

	coordM := st.Coordinators[0].MetricsAddr
	targets := map[string]string{"coordinator": coordM, "gateway": gwMetrics}
	for _, s := range st.Servers {
		targets[fmt.Sprint("server ", s.ID)] = s.MetricsAddr
	}
	for who, addr := range targets {
		if addr == "" {
			t.Fatalf("%s has no metrics address", who)
		}
		sc := scrapeURL(t, secure, "https://"+addr)
		if len(sc) == 0 {
			t.Errorf("%s: an HTTPS scrape read no series", who)
		}
		resp, err := plain.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "ftkv_") {
				t.Errorf("%s: a scrape in clear got %s with %d bytes of metrics", who, resp.Status, len(body))
			}
		}
	}
	if got := scrapeURL(t, secure, "https://"+coordM).get("ftkv_coord_view_epoch"); got == 0 {
		t.Errorf("coordinator: ftkv_coord_view_epoch %v over HTTPS", got)
	}

	// /sd over HTTPS lists every process with the scheme to scrape it by.
	resp, err := secure.Get("https://" + coordM + "/sd")
	if err != nil {
		t.Fatal(err)
	}
	var groups []sdTarget
	err = json.NewDecoder(resp.Body).Decode(&groups)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("/sd: %v", err)
	}
	if len(groups) != 1+len(st.Servers) {
		t.Fatalf("/sd lists %d groups, want %d: %+v", len(groups), 1+len(st.Servers), groups)
	}
	for _, g := range groups {
		if g.Labels["__scheme__"] != "https" {
			t.Errorf("/sd group %+v: want __scheme__ https", g)
		}
	}
	t.Logf("HTTPS metrics read from %d processes; /sd names __scheme__ https", len(targets))
}
