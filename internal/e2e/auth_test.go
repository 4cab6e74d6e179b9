package e2e

// End-to-end tests of client authentication: a cluster with users
// (-insecure-auth: loopback without TLS), the Go client, bin/client and
// raw frames; roles, the redacted status, throttled failures, failover
// under load with authenticated clients, and a search of every log, the
// process table and the run's files for the passwords and the cluster
// secret.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"ftkv/client"
	"ftkv/gateway"
	"ftkv/internal/auth"
	"ftkv/internal/testkit/proxy"
	"ftkv/internal/testkit/testcluster"
	"ftkv/wire"
)

// authUser is one configured user and its password.
type authUser struct{ name, role, password, hash string }

// authUsers are an admin, a readwrite and a read user, with random
// passwords (so that a search for them finds only leaks).
type authUsers struct{ admin, writer, reader authUser }

func (u authUsers) all() []authUser { return []authUser{u.admin, u.writer, u.reader} }

func newAuthUsers(t *testing.T) authUsers {
	t.Helper()
	mk := func(name, role string) authUser {
		var b [12]byte
		_, _ = rand.Read(b[:])
		pw := "pw-" + name + "-" + hex.EncodeToString(b[:])
		// bcrypt's minimum cost: -race binaries check each password once
		// per process, and a cost of 11 takes seconds under the race
		// detector.
		h, err := auth.HashPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return authUser{name: name, role: role, password: pw, hash: h}
	}
	return authUsers{admin: mk("ops", "admin"), writer: mk("app", "readwrite"), reader: mk("dash", "read")}
}

// authConfig is a cluster file of n local servers and the users.
func authConfig(n int, us authUsers) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", n)
	for i := 0; i < n; i++ {
		b.WriteString("localhost 0 0 0\n")
	}
	for _, u := range us.all() {
		fmt.Fprintf(&b, "user %s %s %s\n", u.name, u.role, u.hash)
	}
	return b.String()
}

// startAuthCluster runs n servers with users; the harness's own clients
// are the admin's.
func startAuthCluster(t *testing.T, n int, us authUsers, args ...string) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, testcluster.Options{Config: authConfig(n, us), Args: append([]string{"-insecure-auth"}, args...),
		ClientOptions: []client.Option{client.WithAuth(us.admin.name, us.admin.password)}})
}

// dialAs dials c as user with password ("" user: no credentials).
func dialAs(c *testcluster.Cluster, user, password string, opts ...client.Option) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if user != "" {
		opts = append(opts, client.WithAuth(user, password))
	}
	return client.Dial(ctx, c.Addr, opts...)
}

// runCLIEnv runs bin/client against addr with env added to its
// environment.
func runCLIEnv(t *testing.T, bin, addr string, env []string, args ...string) cliResult {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	return runBin(t, 30*time.Second, filepath.Join(bin, "client"), env, append([]string{"-h", host, "-p", port}, args...)...)
}

// runBin runs the program at path with args and env added to its
// environment, for at most timeout, and returns its output and exit code.
func runBin(t *testing.T, timeout time.Duration, path string, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %q: %v", filepath.Base(path), args, err)
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code}
}

// TestAuth: with users configured, a client without credentials, with a
// wrong password or an unknown user is refused with a clear error on the
// coordinator's and the servers' client ports (which got the users from
// the coordinator); a read user reads and is refused writes and shutdown
// (its client stays usable); readwrite and admin users work; only an
// admin sees the status's details; failed attempts from one address are
// throttled and logged with the user name and address. At the end no
// log, process's command line or environment, nor any file of the run
// holds a password or the cluster secret.
func TestAuth(t *testing.T) {
	us := newAuthUsers(t)
	c := startAuthCluster(t, 3, us)
	admin := c.Client()
	st := c.Status(t)
	if st.Redacted || st.Servers[0].PID == 0 {
		t.Fatalf("the admin's status is redacted: %+v", st.Servers[0])
	}

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct{ name, user, pw, want string }{
			{"no credentials", "", "", "authentication required"},
			{"wrong password", us.writer.name, us.reader.password, "unknown user or wrong password"},
			{"unknown user", "mallory", us.writer.password, "unknown user or wrong password"},
		} {
			cl, err := dialAs(c, tc.user, tc.pw)
			if err == nil {
				cl.Close()
				t.Fatalf("%s: dial succeeded", tc.name)
			}
			if !errors.Is(err, client.ErrAuth) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want ErrAuth saying %q", tc.name, err, tc.want)
			}
		}
		// Each server's client port refuses too: the coordinator handed
		// them the users.
		for _, s := range st.Servers {
			nc, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpGet, ID: 1, Epoch: st.Epoch, Key: []byte("k")}))
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(nc)
			f, err := readFrame(br)
			if err != nil || f.Status != wire.StatusUnauthenticated || !strings.Contains(string(f.Value), "authentication required") {
				t.Errorf("server %d: GET without HELLO answered %v %v %q", s.ID, err, f.Status, f.Value)
			}
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("server %d: connection open after the refusal", s.ID)
			}
			nc.Close()
		}
	})

	writer, err := dialAs(c, us.writer.name, us.writer.password)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	reader, err := dialAs(c, us.reader.name, us.reader.password)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	t.Run("roles", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		keys := keysOnShards(3, 2, "auth-roles")
		for _, k := range keys {
			if err := writer.Put(ctx, k, []byte("w:"+k)); err != nil {
				t.Fatalf("writer Put %s: %v", k, err)
			}
			if err := writer.Append(ctx, k, []byte("+")); err != nil {
				t.Fatalf("writer Append %s: %v", k, err)
			}
			if ok, err := admin.CompareAndSwap(ctx, k, []byte("w:"+k+"+"), []byte("a:"+k)); err != nil || !ok {
				t.Fatalf("admin CAS %s: %v %v", k, ok, err)
			}
			if v, err := reader.Get(ctx, k); err != nil || string(v) != "a:"+k {
				t.Fatalf("reader Get %s = %q, %v", k, v, err)
			}
			for name, op := range map[string]func() error{
				"Put":    func() error { return reader.Put(ctx, k, []byte("r")) },
				"Delete": func() error { return reader.Delete(ctx, k) },
				"Append": func() error { return reader.Append(ctx, k, []byte("r")) },
				"CAS":    func() error { _, err := reader.CompareAndSwap(ctx, k, nil, []byte("r")); return err },
			} {
				start := time.Now()
				err := op()
				if !errors.Is(err, client.ErrPermission) || !strings.Contains(err.Error(), "user dash (role read) may not") {
					t.Errorf("reader %s %s: %v, want ErrPermission", name, k, err)
				}
				if time.Since(start) > 2*time.Second {
					t.Errorf("reader %s: refused after %s (retried?)", name, time.Since(start))
				}
			}
			if v, err := reader.Get(ctx, k); err != nil || string(v) != "a:"+k {
				t.Fatalf("reader Get %s after its refused writes = %q, %v", k, v, err)
			}
			if err := writer.Delete(ctx, k); err != nil {
				t.Fatalf("writer Delete %s: %v", k, err)
			}
		}
		if err := reader.ShutdownCluster(ctx); !errors.Is(err, client.ErrPermission) {
			t.Errorf("reader shutdown: %v, want ErrPermission", err)
		}
		if err := writer.ShutdownCluster(ctx); !errors.Is(err, client.ErrPermission) {
			t.Errorf("writer shutdown: %v, want ErrPermission", err)
		}
	})

	t.Run("check credentials", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, u := range us.all() {
			if role, err := writer.CheckCredentials(ctx, u.name, u.password); err != nil || role != u.role {
				t.Errorf("CheckCredentials(%s) = %q, %v; want %q", u.name, role, err, u.role)
			}
		}
		if _, err := writer.CheckCredentials(ctx, us.reader.name, "wrong"); !errors.Is(err, client.ErrAuth) {
			t.Errorf("CheckCredentials with a wrong password: %v", err)
		}
	})

	t.Run("status details for admins only", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rs, err := reader.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !rs.Redacted || len(rs.Servers) != 3 {
			t.Fatalf("reader's status: redacted %v, %d servers", rs.Redacted, len(rs.Servers))
		}
		for i, s := range rs.Servers {
			if s.PID != 0 || s.Host != "" || s.PeerAddr != "" || s.CtlAddr != "" || s.MetricsAddr != "" || s.RSSBytes != 0 {
				t.Errorf("reader sees server %d's details: %+v", i, s)
			}
			if s.Addr != st.Servers[i].Addr || s.State == "" || s.Role == "" {
				t.Errorf("reader's status lacks server %d's basics: %+v", i, s)
			}
		}
		// bin/client status --json keeps its field names for every user.
		r := runCLIEnv(t, c.Bin, c.Addr, []string{"FTKV_PASSWORD=" + us.reader.password}, "-user", us.reader.name, "status", "--json")
		if r.code != 0 {
			t.Fatalf("status --json as reader: exit %d: %s", r.code, r.stderr)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r.stdout)
		}
		srv := doc["servers"].([]any)[0].(map[string]any)
		for _, k := range []string{"id", "addr", "host", "pid", "state", "primary_keys", "secondary_keys"} {
			if _, ok := srv[k]; !ok {
				t.Errorf("reader's status --json has no %q: %v", k, srv)
			}
		}
	})

	t.Run("cli", func(t *testing.T) {
		env := func(pw string) []string { return []string{"FTKV_PASSWORD=" + pw} }
		r := runCLIEnv(t, c.Bin, c.Addr, env(us.writer.password), "-user", us.writer.name, "P", "cli key", "cli value")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "OK" {
			t.Fatalf("P as writer: exit %d, %q, %q", r.code, r.stdout, r.stderr)
		}
		r = runCLIEnv(t, c.Bin, c.Addr, env(us.reader.password), "-user", us.reader.name, "G", "cli key")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "cli value" {
			t.Fatalf("G as reader: exit %d, %q, %q", r.code, r.stdout, r.stderr)
		}
		for _, tc := range []struct {
			name string
			env  []string
			args []string
			want string
		}{
			{"read user writes", env(us.reader.password), []string{"-user", us.reader.name, "P", "cli key", "x"}, "permission denied: user dash (role read) may not PUT"},
			{"no user", nil, []string{"G", "cli key"}, "authentication required"},
			{"wrong password", env("not-" + us.writer.password), []string{"-user", us.writer.name, "G", "cli key"}, "unknown user or wrong password"},
			{"shutdown by a writer", env(us.writer.password), []string{"-user", us.writer.name, "shutdown"}, "permission denied"},
		} {
			r := runCLIEnv(t, c.Bin, c.Addr, tc.env, tc.args...)
			if r.code != 4 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%s: exit %d, stderr %q; want exit 4 and %q", tc.name, r.code, r.stderr, tc.want)
			}
			oneErrorLine(t, tc.name, r.stderr)
			if n := strings.Count(r.stderr, "permission denied"); n > 1 {
				t.Errorf("%s: stderr %q says \"permission denied\" %d times", tc.name, r.stderr, n)
			}
		}
		// A password as a flag's value is refused, and not repeated.
		r = runCLIEnv(t, c.Bin, c.Addr, nil, "-a", us.writer.password, "G", "k")
		if r.code != 2 || strings.Contains(r.stderr, us.writer.password) {
			t.Errorf("-a PASSWORD: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("failures throttled per address", func(t *testing.T) {
		// From another loopback address, so that this address's failures
		// do not hold back the other subtests.
		from := client.WithDialer((&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext)
		var throttled bool
		for i := 0; i < auth.DefaultFailBurst+3 && !throttled; i++ {
			_, err := dialAs(c, us.writer.name, fmt.Sprintf("guess-%d", i), from)
			if !errors.Is(err, client.ErrAuth) {
				t.Fatalf("guess %d: %v, want ErrAuth", i, err)
			}
			throttled = strings.Contains(err.Error(), "too many failed authentication attempts")
		}
		if !throttled {
			t.Fatalf("%d wrong passwords in a row from one address were never throttled", auth.DefaultFailBurst+3)
		}
		// Throttled: the next guess is refused at once, unchecked...
		start := time.Now()
		if _, err := dialAs(c, "nobody", "guess", from); err == nil || !strings.Contains(err.Error(), "too many failed") {
			t.Errorf("a guess from a throttled address: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("a throttled guess took %s", d)
		}
		// ...but another address is served.
		cl, err := dialAs(c, us.writer.name, us.writer.password)
		if err != nil {
			t.Fatalf("writer from 127.0.0.1 while 127.0.0.2 is throttled: %v", err)
		}
		cl.Close()
		testcluster.Eventually(t, 5*time.Second, "the failures in the log, with the user and the address", func() bool {
			failed := false
			for _, line := range strings.Split(c.Log(), "\n") {
				failed = failed || strings.Contains(line, `"user":"app"`) && strings.Contains(line, `"remote":"127.0.0.2"`) &&
					strings.Contains(line, `"message":"authentication failed"`)
			}
			return failed && strings.Contains(c.Log(), "authentication attempts throttled")
		})
	})

	// The leak search, with the cluster running (ps, /proc) and after
	// its shutdown (logs and files complete).
	procs := clusterPIDs(t, c, st)
	secret := clusterSecret(t, c)
	secrets := map[string]string{"the cluster secret": secret}
	for _, u := range us.all() {
		secrets[u.name+"'s password"] = u.password
		secrets[u.name+"'s hash"] = u.hash
	}
	checkNoLeaks(t, "ps -eo args", psArgs(t), secrets)
	for _, pid := range procs {
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if err != nil {
				t.Fatalf("pid %d: %v", pid, err)
			}
			checkNoLeaks(t, fmt.Sprintf("/proc/%d/%s", pid, f), string(b), secrets)
		}
	}
	if err := c.Shutdown(20 * time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	checkNoLeaks(t, "the coordinator's stderr", c.Stderr(), secrets)
	checkRunFiles(t, c.Dir, c.ConfigPath, secrets)
}

// clusterPIDs are the coordinator's and the servers' pids.
func clusterPIDs(t *testing.T, c *testcluster.Cluster, st *client.ClusterStatus) []int {
	pids := []int{c.CoordPID()}
	for _, s := range st.Servers {
		if s.PID <= 0 {
			t.Fatalf("server %d has no pid in the admin's status", s.ID)
		}
		pids = append(pids, s.PID)
	}
	return pids
}

// clusterSecret reads the cluster secret from the coordinator's Raft
// state (the one place it is kept), so the search knows what to look for.
func clusterSecret(t *testing.T, c *testcluster.Cluster) string {
	t.Helper()
	db := filepath.Join(c.Dir, "ftkv-coord", "raft.db")
	var m []string
	testcluster.Eventually(t, 10*time.Second, "the cluster secret in "+db, func() bool {
		b, _ := os.ReadFile(db)
		m = regexp.MustCompile(`"secret":"([0-9a-f]{32})"`).FindStringSubmatch(string(b))
		return m != nil
	})
	return m[1]
}

func psArgs(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ps", "-eo", "args").Output()
	if err != nil {
		t.Fatalf("ps: %v", err)
	}
	return string(out)
}

// checkNoLeaks fails if text (what) holds any of secrets.
func checkNoLeaks(t *testing.T, what, text string, secrets map[string]string) {
	t.Helper()
	for name, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s holds %s", what, name)
		}
	}
}

// checkRunFiles searches every file of the run's directory (logs, dumps,
// data) and their names for secrets. The cluster secret is kept in the
// Raft state only, in a directory only the owner can enter; the hashes in
// the config file only.
func checkRunFiles(t *testing.T, dir, cfgPath string, secrets map[string]string) {
	t.Helper()
	raftDir := filepath.Join(dir, "ftkv-coord")
	if fi, err := os.Stat(raftDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v (%v), want 0700: it holds the cluster secret", raftDir, fi.Mode().Perm(), err)
	}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		checkNoLeaks(t, "the file name "+path, path, secrets)
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		only := map[string]string{}
		for k, v := range secrets {
			switch {
			case k == "the cluster secret" && strings.HasPrefix(path, raftDir+string(filepath.Separator)):
			case strings.HasSuffix(k, "'s hash") && path == cfgPath:
				// The hashes' place.
			default:
				only[k] = v
			}
		}
		checkNoLeaks(t, path, string(b), only)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Errorf("only %d files searched in %s", files, dir)
	}
}

// TestAuthFailoverUnderLoad: the shape of TestFailoverKillEachRole with
// users: authenticated clients (readwrite) run a workload and ledger
// writers while a server is killed; the respawned incarnation gets the
// users from the coordinator, and no call fails.
func TestAuthFailoverUnderLoad(t *testing.T) {
	const n = 3
	us := newAuthUsers(t)
	c := startAuthCluster(t, n, us)
	cls := make([]*client.Client, 4)
	for i := range cls {
		cls[i] = c.Client(client.WithAuth(us.writer.name, us.writer.password), client.WithConnsPerServer(1+i%2))
	}
	c.WaitRecovered(t, 10*time.Second)
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "auth-failover"),
		Workers: 8, OpTimeout: foOpTimeout, Seed: seed(t)})
	l := startLedger(t, cls, 3, "ledger-auth-failover", foOpTimeout)
	waitProgress(t, c, "load before the kill", w.Done, 200, 500*time.Millisecond)
	before := c.Status(t)
	v := c.KillServer(t, 1)
	after := c.WaitRecovered(t, recoverTimeout, v)
	checkReplaced(t, before, after, 1)
	waitProgress(t, c, "load after recovery", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cls[0])
}

// TestAuthGateway: a gateway logged in to a cluster with users as its
// readwrite user (as bin/gateway -user does) makes its Redis clients log
// in as users of the cluster, checked by the coordinator: go-redis with
// RESP2 (AUTH user pass) and RESP3 (HELLO 3 AUTH user pass); without
// credentials NOAUTH, with a wrong password WRONGPASS, a read user's SET
// NOPERM while its GETs are served.
func TestAuthGateway(t *testing.T) {
	us := newAuthUsers(t)
	c := startAuthCluster(t, 3, us)
	cl := c.Client(client.WithAuth(us.writer.name, us.writer.password))
	g, err := gateway.New(gateway.Config{Store: cl, Listen: "127.0.0.1:0", Timeout: 15 * time.Second,
		Authenticate: cl.CheckCredentials, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
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
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc := func(proto int, user, pw string) *redis.Client {
		rdb := redis.NewClient(&redis.Options{Addr: g.Addr(), Protocol: proto, Username: user, Password: pw,
			ReadTimeout: 15 * time.Second, MaxRetries: -1, DisableIdentity: true})
		t.Cleanup(func() { rdb.Close() })
		return rdb
	}
	for _, proto := range []int{2, 3} {
		w := rc(proto, us.writer.name, us.writer.password)
		key := fmt.Sprintf("gw-auth-%d", proto)
		if err := w.Set(ctx, key, "v", 0).Err(); err != nil {
			t.Fatalf("RESP%d writer SET: %v", proto, err)
		}
		r := rc(proto, us.reader.name, us.reader.password)
		if v, err := r.Get(ctx, key).Result(); err != nil || v != "v" {
			t.Fatalf("RESP%d reader GET = %q, %v", proto, v, err)
		}
		if err := r.Set(ctx, key, "x", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("RESP%d reader SET: %v, want NOPERM", proto, err)
		}
		if err := rc(proto, us.writer.name, "wrong").Get(ctx, key).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("RESP%d wrong password: %v, want WRONGPASS", proto, err)
		}
		if v, err := cl.Get(ctx, key); err != nil || string(v) != "v" {
			t.Errorf("the cluster has %s = %q, %v", key, v, err)
		}
	}
	if err := rc(2, "", "").Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("no credentials: %v, want NOAUTH", err)
	}
	// redis-cli --user with the password in REDISCLI_AUTH (never -a: ps).
	if _, err := exec.LookPath("redis-cli"); err == nil {
		host, port, _ := net.SplitHostPort(g.Addr())
		cmd := exec.CommandContext(ctx, "redis-cli", "-h", host, "-p", port, "--user", us.reader.name, "GET", "gw-auth-2")
		cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+us.reader.password)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "v" {
			t.Errorf("redis-cli --user %s GET: %v %q", us.reader.name, err, out)
		}
	}
}

// TestAuthWithTLS: users and TLS together — the coordinator starts with
// users without -insecure-auth, clients log in over TLS (the Go client
// without a client certificate, bin/client with -tls-ca and -user), roles
// hold, refusals are clear, and no password shows in ps or the logs.
func TestAuthWithTLS(t *testing.T) {
	us := newAuthUsers(t)
	p := newTLSPKI(t)
	c := testcluster.Start(t, testcluster.Options{Config: authConfig(3, us) + p.lines(),
		ClientOptions: []client.Option{client.WithTLS(p.bare), client.WithAuth(us.admin.name, us.admin.password)}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st := c.Status(t); st.Redacted || st.Servers[0].PID == 0 {
		t.Fatalf("the admin's status over TLS: %+v", st.Servers[0])
	}
	writer, err := dialAs(c, us.writer.name, us.writer.password, client.WithTLS(p.bare))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	reader, err := dialAs(c, us.reader.name, us.reader.password, client.WithTLS(p.bare))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for _, k := range keysOnShards(3, 2, "auth-tls") {
		if err := writer.Put(ctx, k, []byte("v")); err != nil {
			t.Fatalf("writer Put over TLS: %v", err)
		}
		if v, err := reader.Get(ctx, k); err != nil || string(v) != "v" {
			t.Fatalf("reader Get over TLS = %q, %v", v, err)
		}
		if err := reader.Put(ctx, k, []byte("x")); !errors.Is(err, client.ErrPermission) {
			t.Errorf("reader Put over TLS: %v, want ErrPermission", err)
		}
	}
	if _, err := dialAs(c, "", "", client.WithTLS(p.bare)); !errors.Is(err, client.ErrAuth) {
		t.Errorf("no credentials over TLS: %v, want ErrAuth", err)
	}
	if _, err := dialAs(c, us.writer.name, "wrong", client.WithTLS(p.bare)); !errors.Is(err, client.ErrAuth) {
		t.Errorf("a wrong password over TLS: %v, want ErrAuth", err)
	}
	tlsArgs := []string{"-tls-ca", p.file("ca.pem")}
	r := runCLIEnv(t, c.Bin, c.Addr, []string{"FTKV_PASSWORD=" + us.writer.password}, append(tlsArgs, "-user", us.writer.name, "P", "auth-tls-cli", "ok")...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "OK" {
		t.Fatalf("bin/client -tls-ca -user P: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLIEnv(t, c.Bin, c.Addr, []string{"FTKV_PASSWORD=" + us.reader.password}, append(tlsArgs, "-user", us.reader.name, "P", "auth-tls-cli", "no")...)
	if r.code != 4 || !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("bin/client -tls-ca as a read user P: exit %d %q", r.code, r.stderr)
	}
	// A client that forgot -tls-ca is refused before its password is
	// sent (a review saw it in clear on loopback, then the refusal).
	var mu sync.Mutex
	var sent []byte
	px, err := proxy.Start(c.Addr, proxy.Options{Sent: func(b []byte) {
		mu.Lock()
		sent = append(sent, b...)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	r = runCLIEnv(t, c.Bin, px.Addr(), []string{"FTKV_PASSWORD=" + us.writer.password}, "-user", us.writer.name, "G", "auth-tls-cli")
	if r.code != 4 || !strings.Contains(r.stderr, "requires TLS") {
		t.Errorf("bin/client -user without -tls-ca: exit %d %q, want 4 saying the port requires TLS", r.code, r.stderr)
	}
	if _, err := dialAs(&testcluster.Cluster{Addr: px.Addr()}, us.admin.name, us.admin.password); !errors.Is(err, client.ErrAuth) || !strings.Contains(err.Error(), "requires TLS") {
		t.Errorf("a Go client with credentials and no TLS: %v, want ErrAuth saying the port requires TLS", err)
	}
	mu.Lock()
	if px.Accepted() == 0 {
		t.Error("nothing went through the proxy")
	}
	for _, u := range []authUser{us.writer, us.admin} {
		if bytes.Contains(sent, []byte(u.password)) {
			t.Errorf("%s's password was sent in clear to a port that requires TLS", u.name)
		}
	}
	mu.Unlock()
	secrets := map[string]string{}
	for _, u := range us.all() {
		secrets[u.name+"'s password"] = u.password
	}
	checkNoLeaks(t, "ps -eo args", psArgs(t), secrets)
	if err := c.Shutdown(20 * time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	checkNoLeaks(t, "the log", c.Log(), secrets)
}

// TestUserAndSpareFlags: -user lines replace the config file's user
// lines (the flag wins, as for every setting), and -spare lines its spare
// lines; a bad one is one line on stderr and exit status 2.
func TestUserAndSpareFlags(t *testing.T) {
	us := newAuthUsers(t)
	// The file has the admin only; the flag gives the writer only.
	file := fmt.Sprintf("2\nlocalhost 0 0 0\nlocalhost 0 0 0\nuser %s %s %s\n", us.admin.name, us.admin.role, us.admin.hash)
	c := testcluster.Start(t, testcluster.Options{Config: file,
		Args:          []string{"-insecure-auth", "-user", fmt.Sprintf("%s %s %s", us.writer.name, us.writer.role, us.writer.hash)},
		ClientOptions: []client.Option{client.WithAuth(us.writer.name, us.writer.password)}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := dialAs(c, us.writer.name, us.writer.password)
	if err != nil {
		t.Fatalf("the -user flag's user: %v", err)
	}
	defer cl.Close()
	if err := cl.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("the -user flag's readwrite user writes: %v", err)
	}
	if cl, err := dialAs(c, us.admin.name, us.admin.password); err == nil {
		err = cl.Put(ctx, "k", []byte("w"))
		cl.Close()
		if !errors.Is(err, client.ErrAuth) {
			t.Errorf("the file's user, replaced by -user: %v, want %v", err, client.ErrAuth)
		}
	} else if !errors.Is(err, client.ErrAuth) {
		t.Errorf("the file's user, replaced by -user: %v, want %v", err, client.ErrAuth)
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.txt")
	if err := os.WriteFile(cfg, []byte(authConfig(2, us)), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := testcluster.Bin(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-user", "app readwrite"}, "-user: expected"},
		{[]string{"-user", "app boss " + us.writer.hash}, "-user: user app: "},
		{[]string{"-spare", "bad host"}, `-spare "bad host": `},
		// Taken: with users and no TLS, a spare must be on this host.
		{[]string{"-insecure-auth", "-spare", "alice@192.0.2.7"}, "-spare: -insecure-auth: spare alice@192.0.2.7 is not on this host"},
	} {
		r := runBin(t, 30*time.Second, filepath.Join(bin, "coord"), nil, append([]string{"-C", cfg, "-c", "0", "-s", "0", "-no-stdin"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("coord %q: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
