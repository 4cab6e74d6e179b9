package bench

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"ftkv/bench/resp"
)

// startRedisServer runs a real redis-server (persistence off) on a free
// loopback port until the test ends and returns its address. It skips the
// test when redis-server is not installed on a developer's machine; in CI
// (CI set, or running as root, where .ci/run installs it) that fails.
func startRedisServer(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" || os.Geteuid() == 0 {
			t.Fatalf("redis-server is missing (CI installs it: .ci/run)")
		}
		t.Skip("SKIP: redis-server is missing (apt-get install redis-server); CI runs this test")
	}
	for attempt := 0; attempt < 3; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command(path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--protected-mode", "no", "--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			r, err := Redis(addr).NewRequester(ctx)
			cancel()
			if err == nil {
				r.Close()
				return addr
			}
			select {
			case <-exited: // lost the port to someone else: try another
				deadline = time.Time{}
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	t.Fatal("redis-server did not start")
	return ""
}

// redisInfoField reads one field of INFO's answer over a plain connection.
func redisInfoField(t *testing.T, addr, section, field string) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r := newRedisRequester(nc)
	if _, err := nc.Write(resp.AppendCommand(nil, []byte("INFO"), []byte(section))); err != nil {
		t.Fatal(err)
	}
	rep, err := r.next()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(rep.Str, []byte("\r\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			return string(v)
		}
	}
	t.Fatalf("INFO %s has no %s: %q", section, field, rep.Str)
	return ""
}

// TestRueidisRealRedis drives a real Redis with goroutines sharing rueidis
// clients: one connection per requester, every operation answered.
func TestRueidisRealRedis(t *testing.T) {
	addr := startRedisServer(t)
	tg := RedisRueidis(addr)
	if tg.Name() != RueidisTargetName || tg.Addr() != addr {
		t.Errorf("target %q at %q", tg.Name(), tg.Addr())
	}
	ctx := context.Background()

	// One connection per requester, whatever GOMAXPROCS (rueidis would
	// otherwise open up to 4).
	reqs := make([]Requester, 3)
	for i := range reqs {
		r, err := tg.NewSharedRequester(ctx)
		if err != nil {
			t.Fatal(err)
		}
		reqs[i] = r
	}
	batch := []Op{
		{Kind: Put, Key: []byte("k"), Value: []byte("v1")},
		{Kind: Get, Key: []byte("k")},
		{Kind: Get, Key: []byte("absent")},
	}
	if err := reqs[0].Do(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for i, op := range batch {
		if !op.Done || op.Err != nil || op.Latency <= 0 || op.Miss != (i == 2) {
			t.Errorf("op %d: %+v", i, op)
		}
	}
	// rueidis dials its pipelining connections as commands need them.
	for _, r := range reqs {
		for i := 0; i < 32; i++ {
			op := []Op{{Kind: Put, Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v")}}
			if err := r.Do(ctx, op); err != nil || op[0].Err != nil {
				t.Fatal(err, op[0].Err)
			}
		}
	}
	if got := redisInfoField(t, addr, "clients", "connected_clients"); got != "4" { // 3 + the INFO's own
		t.Errorf("connected_clients = %s with 3 requesters open, want 4", got)
	}
	for _, r := range reqs {
		r.Close()
	}

	cfg := Config{Connections: 2, Goroutines: 8, Ops: 4000, Ratio: 0.5, Keys: 300, ValueSize: 50}
	res, err := Run(ctx, cfg, tg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 4000 || res.Errors != 0 || res.Misses != 0 || res.Preload.Keys != 300 ||
		res.Target != RueidisTargetName || res.Goroutines != 8 || res.Latency.P99 <= 0 {
		t.Fatalf("result %+v", res)
	}
	if got := redisInfoField(t, addr, "keyspace", "db0"); !bytes.HasPrefix([]byte(got), []byte("keys="+strconv.Itoa(300+1+32)+",")) {
		t.Errorf("keyspace db0 = %s, want the 300 preloaded keys and k, k0..k31", got)
	}
}
