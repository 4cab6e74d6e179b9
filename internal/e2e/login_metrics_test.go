package e2e

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"ftkv/client"
	"ftkv/gateway"
	"ftkv/internal/frameio"
	"ftkv/internal/testkit/testcluster"
	"ftkv/wire"
)

// TestLoginMetrics: every process that takes logins counts them by
// outcome in /metrics — the coordinator, a server (a HELLO with a wrong
// password on its client port) and a gateway (go-redis with a wrong and
// a right password) — so an operator can alert on password guessing.
func TestLoginMetrics(t *testing.T) {
	testcluster.SkipIfSecure(t, "it sends plaintext HELLO frames to a server on purpose")
	us := newAuthUsers(t)
	c := startAuthCluster(t, 3, us, "-metrics", "127.0.0.1:0")
	st := c.Status(t)
	if len(st.Coordinators) != 1 || st.Coordinators[0].MetricsAddr == "" || st.Servers[0].MetricsAddr == "" {
		t.Fatalf("status lacks metrics addresses")
	}
	coordM, srv := st.Coordinators[0].MetricsAddr, st.Servers[0]
	const name = "ftkv_coord_logins_total"
	login := func(s scrape, metric, outcome string) float64 { return s.get(metric, "outcome", outcome) }
	before := scrapeTarget(t, coordM)
	for _, o := range []string{"ok", "denied", "throttled", "unchecked", "no_credentials"} {
		if _, ok := before[series(name, "outcome", o)]; !ok {
			t.Fatalf("coordinator /metrics has no %s{outcome=%q} before any login", name, o)
		}
	}

	// The coordinator: a wrong password, then no credentials at all.
	if cl, err := dialAs(c, us.writer.name, "wrong"); err == nil {
		cl.Close()
		t.Fatal("a wrong password was let in")
	}
	if cl, err := dialAs(c, "", ""); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = cl.Put(ctx, "k", []byte("v"))
		cancel()
		cl.Close()
		if err == nil {
			t.Fatal("a client without credentials could write")
		}
	}
	after := scrapeTarget(t, coordM)
	if d := login(after, name, "denied") - login(before, name, "denied"); d < 1 {
		t.Errorf("coordinator: denied logins moved by %v, want >= 1", d)
	}
	if d := login(after, name, "no_credentials") - login(before, name, "no_credentials"); d < 1 {
		t.Errorf("coordinator: requests without credentials moved by %v, want >= 1", d)
	}

	// A server: HELLO with a wrong password, then with the right one.
	sb := scrapeTarget(t, srv.MetricsAddr)
	for _, pw := range []string{"wrong", us.writer.password} {
		nc, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpHello, ID: 1, Key: []byte(us.writer.name), Value: []byte(pw)})); err != nil {
			t.Fatal(err)
		}
		f, err := frameio.ReadFrame(bufio.NewReader(nc))
		nc.Close()
		if err != nil {
			t.Fatalf("server's answer to HELLO: %v", err)
		}
		if want := pw != "wrong"; (f.Status == wire.StatusOK) != want {
			t.Fatalf("HELLO with password %q answered %s %q", pw, f.Status, f.Value)
		}
	}
	sa := scrapeTarget(t, srv.MetricsAddr)
	for _, o := range []string{"denied", "ok"} {
		if d := login(sa, "ftkv_server_logins_total", o) - login(sb, "ftkv_server_logins_total", o); d != 1 {
			t.Errorf("server %d: %s logins moved by %v, want 1", srv.ID, o, d)
		}
	}

	// A gateway.
	gwAddr, gwMetrics := metricsGateway(t, c, func(cfg *gateway.Config) {
		cfg.Authenticate = cfg.Store.(*client.Client).CheckCredentials
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, pw := range []string{"wrong", us.reader.password} {
		rdb := redis.NewClient(&redis.Options{Addr: gwAddr, Username: us.reader.name, Password: pw,
			MaxRetries: -1, DisableIdentity: true})
		err := rdb.Ping(ctx).Err()
		rdb.Close()
		if (err == nil) != (i == 1) {
			t.Fatalf("gateway login with password %q: %v", pw, err)
		}
	}
	// go-redis tries HELLO … AUTH, then AUTH: a wrong password is two
	// attempts.
	gs := scrapeTarget(t, gwMetrics)
	if v := login(gs, "ftkv_gateway_logins_total", "denied"); v < 1 || v > 2 {
		t.Errorf("gateway: denied logins = %v, want 1 or 2", v)
	}
	if v := login(gs, "ftkv_gateway_logins_total", "ok"); v != 1 {
		t.Errorf("gateway: ok logins = %v, want 1", v)
	}
	t.Logf("coordinator denied %v, no_credentials %v; gateway denied %v", login(after, name, "denied"),
		login(after, name, "no_credentials"), login(gs, "ftkv_gateway_logins_total", "denied"))
}
