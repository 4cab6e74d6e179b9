package e2e

// The gateway driven by clients nobody here wrote: redis-cli (one-shot
// commands, -x, a piped session, --pipe mass insertion), redis-benchmark
// and go-redis (plain, pipelined, RESP3), each checking the values it
// reads, and the HTTP API with curl's semantics through net/http.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"ftkv/client"
	"ftkv/gateway"
	"ftkv/internal/testkit/testcluster"
)

// needRedisTools skips the test when redis-cli or redis-benchmark is
// missing on a developer's machine; in CI (CI set, or running as root,
// where .ci/run installs redis-tools) a missing tool fails it.
func needRedisTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"redis-cli", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" || os.Geteuid() == 0 {
				t.Fatalf("%s is missing (CI installs redis-tools: .ci/run)", tool)
			}
			t.Skipf("SKIP: %s is missing (apt-get install redis-tools); CI runs this test", tool)
		}
	}
}

// startGateway runs a gateway over c in this process, on free loopback
// ports for RESP and HTTP.
func startGateway(t *testing.T, c *testcluster.Cluster) (*gateway.Gateway, *client.Client) {
	t.Helper()
	cl := c.Client(client.WithConnsPerServer(2))
	g, err := gateway.New(gateway.Config{Store: cl, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0",
		Timeout: 15 * time.Second, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
		cl.Close()
	})
	return g, cl
}

// redisCLI runs redis-cli against addr with stdin and returns its output.
func redisCLI(t *testing.T, addr, stdin string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("redis-cli %q: %v\n%s%s", args, err, out.String(), errb.String())
	}
	return out.String()
}

func wantOut(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s printed %q, want %q", what, got, want)
	}
}

func TestGatewayRedisCLI(t *testing.T) {
	needRedisTools(t)
	c := testcluster.Start(t, testcluster.Options{N: 3})
	g, cl := startGateway(t, c)
	a := g.Addr()
	ctx := context.Background()

	// One-shot commands.
	wantOut(t, "SET", redisCLI(t, a, "", "SET", "greeting", "hello"), "OK\n")
	wantOut(t, "GET", redisCLI(t, a, "", "GET", "greeting"), "hello\n")
	wantOut(t, "APPEND", redisCLI(t, a, "", "APPEND", "greeting", " world"), "11\n")
	wantOut(t, "GET absent", redisCLI(t, a, "", "GET", "absent"), "\n")
	wantOut(t, "MSET", redisCLI(t, a, "", "MSET", "m1", "a", "m2", "b"), "OK\n")
	wantOut(t, "MGET", redisCLI(t, a, "", "MGET", "m1", "absent", "m2"), "a\n\nb\n")
	wantOut(t, "DEL", redisCLI(t, a, "", "DEL", "m1", "m2", "absent"), "2\n")
	wantOut(t, "unknown", redisCLI(t, a, "", "FLUSHALL"), "ERR unknown command 'FLUSHALL', with args beginning with: \n\n")
	if v, err := cl.Get(ctx, "greeting"); err != nil || string(v) != "hello world" {
		t.Fatalf("the cluster holds greeting = %q, %v", v, err)
	}

	// -x: the last argument from stdin, binary-safe.
	blob := "line 1\nline 2\x00\xff tail"
	wantOut(t, "SET -x", redisCLI(t, a, blob, "-x", "SET", "blob"), "OK\n")
	if v, err := cl.Get(ctx, "blob"); err != nil || string(v) != blob {
		t.Fatalf("the cluster holds blob = %q, %v; want %q", v, err, blob)
	}
	wantOut(t, "STRLEN", redisCLI(t, a, "", "STRLEN", "blob"), fmt.Sprintf("%d\n", len(blob)))

	// A piped session.
	out := redisCLI(t, a, "SET counter 40\nINCR counter\nINCRBY counter 1\nGET counter\nSETNX counter 0\nSELECT 0\nPING\n")
	wantOut(t, "piped session", out, "OK\n41\n42\n42\n0\nOK\nPONG\n")

	// --pipe: mass insertion, then every value checked in the cluster.
	const n = 20000
	var mass bytes.Buffer
	for i := 0; i < n; i++ {
		k, v := fmt.Sprintf("mass:%d", i), fmt.Sprintf("value-%d", i)
		fmt.Fprintf(&mass, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
	}
	out = redisCLI(t, a, mass.String(), "--pipe")
	if !strings.Contains(out, fmt.Sprintf("errors: 0, replies: %d", n)) {
		t.Fatalf("redis-cli --pipe printed %q", out)
	}
	ops := make([]client.BatchOp, n)
	for i := range ops {
		ops[i] = client.BatchOp{Kind: client.BatchGet, Key: fmt.Sprintf("mass:%d", i)}
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.Batch(bctx, ops); err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		if op.Err != nil || !op.Found || string(op.Value) != fmt.Sprintf("value-%d", i) {
			t.Fatalf("%s = %q (found %v, %v) after --pipe", op.Key, op.Value, op.Found, op.Err)
		}
	}
	t.Logf("redis-cli: one-shot, -x, piped session and --pipe of %d SETs, all values read back from the cluster", n)
}

var benchLine = regexp.MustCompile(`(SET|GET): ([0-9.]+) requests per second`)

func TestGatewayRedisBenchmark(t *testing.T) {
	needRedisTools(t)
	c := testcluster.Start(t, testcluster.Options{N: 3})
	g, cl := startGateway(t, c)
	host, port, _ := net.SplitHostPort(g.Addr())
	for _, p := range []string{"1", "16"} {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		cmd := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port, "-t", "set,get", "-n", "20000",
			"-c", "20", "-r", "100", "-d", "16", "-P", p, "-q")
		out, err := cmd.CombinedOutput()
		cancel()
		text := strings.ReplaceAll(string(out), "\r", "\n")
		if err != nil || strings.Contains(text, "rror") || strings.Contains(text, "WARNING") {
			t.Fatalf("redis-benchmark -P %s: %v\n%s", p, err, text)
		}
		m := benchLine.FindAllStringSubmatch(text, -1)
		if len(m) < 2 {
			t.Fatalf("redis-benchmark -P %s printed no SET and GET figures:\n%s", p, text)
		}
		for _, x := range m[len(m)-2:] {
			t.Logf("redis-benchmark -P %s: %s %s requests per second", p, x[1], x[2])
		}
	}
	// Every key redis-benchmark wrote (key:000000000000 … 099) holds its
	// 16-byte value (one random payload per run: the same for all keys
	// written by the last run), in the cluster and through redis-cli.
	var keys []string
	for i := 0; i < 100; i++ {
		keys = append(keys, fmt.Sprintf("key:%012d", i))
	}
	lines := strings.Split(strings.TrimSuffix(redisCLI(t, g.Addr(), "", append([]string{"MGET"}, keys...)...), "\n"), "\n")
	if len(lines) != len(keys) {
		t.Fatalf("MGET of %d keys printed %d lines", len(keys), len(lines))
	}
	want := lines[0]
	if len(want) != 16 {
		t.Fatalf("%s = %q, want the benchmark's 16-byte payload", keys[0], want)
	}
	for i, l := range lines {
		if l != want {
			t.Fatalf("%s = %q through redis-cli, want %q", keys[i], l, want)
		}
		v, err := cl.Get(context.Background(), keys[i])
		if err != nil || string(v) != want {
			t.Fatalf("%s = %q, %v in the cluster", keys[i], v, err)
		}
	}
	t.Logf("redis-benchmark: SET and GET at -P 1 and -P 16 without an error; its 100 keys hold their values")
}

func TestGatewayGoRedis(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	g, cl := startGateway(t, c)
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			ctx := context.Background()
			rdb := redis.NewClient(&redis.Options{Addr: g.Addr(), Protocol: proto, ReadTimeout: 15 * time.Second, MaxRetries: -1})
			defer rdb.Close()
			p := fmt.Sprintf("goredis%d:", proto)
			hello, err := rdb.Do(ctx, "HELLO", fmt.Sprint(proto)).Result()
			if err != nil {
				t.Fatal(err)
			}
			if proto == 3 {
				m, ok := hello.(map[any]any)
				if !ok || m["proto"] != int64(3) || m["server"] != "redis" {
					t.Fatalf("HELLO 3 answered %#v", hello)
				}
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(rdb.Set(ctx, p+"a", "1", 0).Err())
			if v, err := rdb.Get(ctx, p+"a").Result(); err != nil || v != "1" {
				t.Fatalf("GET = %q, %v", v, err)
			}
			if _, err := rdb.Get(ctx, p+"absent").Result(); !errors.Is(err, redis.Nil) {
				t.Fatalf("GET absent: %v, want redis.Nil", err)
			}
			if n, err := rdb.IncrBy(ctx, p+"a", 41).Result(); err != nil || n != 42 {
				t.Fatalf("INCRBY = %d, %v", n, err)
			}
			if n, err := rdb.Decr(ctx, p+"a").Result(); err != nil || n != 41 {
				t.Fatalf("DECR = %d, %v", n, err)
			}
			if n, err := rdb.Append(ctx, p+"s", "ab").Result(); err != nil || n != 2 {
				t.Fatalf("APPEND = %d, %v", n, err)
			}
			if ok, err := rdb.SetNX(ctx, p+"s", "x", 0).Result(); err != nil || ok {
				t.Fatalf("SETNX on a present key = %v, %v", ok, err)
			}
			if old, err := rdb.SetArgs(ctx, p+"s", "cd", redis.SetArgs{Get: true}).Result(); err != nil || old != "ab" {
				t.Fatalf("SET GET = %q, %v", old, err)
			}
			if err := rdb.Set(ctx, p+"e", "1", time.Minute).Err(); err == nil || !strings.Contains(err.Error(), "no expiry") {
				t.Fatalf("SET with EX: %v, want the no-expiry error", err)
			}
			bin := "\x00\xff\r\n"
			must(rdb.MSet(ctx, p+"m1", bin, p+"m2", "two").Err())
			if vs, err := rdb.MGet(ctx, p+"m1", p+"absent", p+"m2").Result(); err != nil || vs[0] != bin || vs[1] != nil || vs[2] != "two" {
				t.Fatalf("MGET = %#v, %v", vs, err)
			}
			if n, err := rdb.Exists(ctx, p+"m1", p+"m2", p+"absent").Result(); err != nil || n != 2 {
				t.Fatalf("EXISTS = %d, %v", n, err)
			}
			if n, err := rdb.Del(ctx, p+"m1", p+"m2", p+"absent").Result(); err != nil || n != 2 {
				t.Fatalf("DEL = %d, %v", n, err)
			}
			if v, err := cl.Get(ctx, p+"s"); err != nil || string(v) != "cd" {
				t.Fatalf("the cluster holds %q, %v", v, err)
			}
			// GETDEL: the value, then nothing; racing GETDELs of one
			// value: exactly one gets it (a compare-and-delete).
			must(rdb.Set(ctx, p+"gd", bin, 0).Err())
			if v, err := rdb.GetDel(ctx, p+"gd").Result(); err != nil || v != bin {
				t.Fatalf("GETDEL = %q, %v", v, err)
			}
			if v, err := cl.Get(ctx, p+"gd"); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("after GETDEL the cluster holds %q, %v", v, err)
			}
			if _, err := rdb.GetDel(ctx, p+"gd").Result(); !errors.Is(err, redis.Nil) {
				t.Fatalf("GETDEL of an absent key: %v, want redis.Nil", err)
			}
			for round := range 20 {
				must(rdb.Set(ctx, p+"tok", round, 0).Err())
				var wg sync.WaitGroup
				var won atomic.Int32
				for range 6 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						v, err := rdb.GetDel(ctx, p+"tok").Result()
						switch {
						case err == nil && v == fmt.Sprint(round):
							won.Add(1)
						case !errors.Is(err, redis.Nil):
							t.Errorf("round %d: GETDEL = %q, %v", round, v, err)
						}
					}()
				}
				wg.Wait()
				if n := won.Load(); n != 1 {
					t.Fatalf("round %d: %d of 6 racing GETDELs got the value, want 1", round, n)
				}
			}
			// A pipeline of 1,000 commands: SETs, GETs of the same keys,
			// INCRs of one counter, answered in order.
			cmds, err := rdb.Pipelined(ctx, func(pp redis.Pipeliner) error {
				for i := 0; i < 250; i++ {
					k := fmt.Sprintf("%sp%d", p, i%40)
					pp.Set(ctx, k, i, 0)
					pp.Get(ctx, k)
					pp.Incr(ctx, p+"ctr")
					pp.Exists(ctx, k)
				}
				return nil
			})
			must(err)
			for i := 0; i < 250; i++ {
				if v := cmds[4*i+1].(*redis.StringCmd).Val(); v != fmt.Sprint(i) {
					t.Fatalf("pipelined GET %d = %q", i, v)
				}
				if v := cmds[4*i+2].(*redis.IntCmd).Val(); v != int64(i+1) {
					t.Fatalf("pipelined INCR %d = %d", i, v)
				}
			}
			info, err := rdb.Info(ctx, "server", "keyspace").Result()
			if err != nil || !strings.Contains(info, "redis_version:") || !strings.Contains(info, "# Keyspace") {
				t.Fatalf("INFO = %q, %v", info, err)
			}
			if n, err := rdb.DBSize(ctx).Result(); err != nil || n < 0 {
				t.Fatalf("DBSIZE = %d, %v", n, err)
			}
			t.Logf("go-redis (RESP%d): commands, binary values, a 1,000-command pipeline answered in order", proto)
		})
	}
}

func TestGatewayHTTP(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	g, cl := startGateway(t, c)
	base := "http://" + g.HTTPAddr()
	req := func(method, path, body string) (int, string) {
		t.Helper()
		r, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := req("PUT", "/v1/kv/dir%2Fkey%00", "from http"); code != 204 {
		t.Fatalf("PUT: %d", code)
	}
	if v, err := cl.Get(context.Background(), "dir/key\x00"); err != nil || string(v) != "from http" {
		t.Fatalf("the cluster holds %q, %v", v, err)
	}
	if code, body := req("GET", "/v1/kv/dir%2Fkey%00", ""); code != 200 || body != "from http" {
		t.Fatalf("GET: %d %q", code, body)
	}
	if code, body := req("GET", "/v1/status", ""); code != 200 || strings.Count(body, `"primary_keys"`) != 3 {
		t.Fatalf("status: %d %s", code, body)
	}
	// The cluster gone (stopped with its coordinator): the status, like
	// a key, is unavailable for now, 503 with Retry-After (the README's
	// words), not 502.
	if err := c.Shutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest("GET", base+"/v1/status", nil)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status with the coordinator gone: %d (Retry-After %q) %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	t.Logf("HTTP API: a binary key written, read back from the cluster and over HTTP; status lists 3 servers, and answers 503 once the coordinator is gone")
}
