package e2e

// End-to-end tests of TLS: a cluster whose every link is TLS (the config's
// tls_* lines, certificates from tlsconf.Generate), failover under load,
// servers on namespace hosts over ssh with their TLS files copied by
// copy_bin, the refusals (a plaintext client, a client certificate from
// another CA, a client certificate on a replication port), and a capture
// of the loopback traffic under load that must hold none of the written
// values and not the cluster secret.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/nethost"
	"ftkv/internal/testkit/testcluster"
	"ftkv/internal/tlsconf"
	"ftkv/wire"
)

// tlsPKI is a generated CA with a certificate per role, and another CA's.
type tlsPKI struct {
	dir, other string
	client     *tls.Config // the cluster's client certificate, trusting its CA
	bare       *tls.Config // no certificate, trusting the cluster's CA
}

func newTLSPKI(t *testing.T) tlsPKI {
	t.Helper()
	p := tlsPKI{dir: filepath.Join(t.TempDir(), "certs"), other: filepath.Join(t.TempDir(), "other")}
	must(t, tlsconf.Generate(p.dir, nil))
	must(t, tlsconf.Generate(p.other, nil))
	m, err := tlsconf.Load(tlsconf.Files{CA: p.file("ca.pem"), Cert: p.file("client.pem"), Key: p.file("client-key.pem")}, tlsconf.RoleClient)
	must(t, err)
	p.client = m.Client(tlsconf.RoleServer, tlsconf.RoleCoordinator)
	b, err := tlsconf.Load(tlsconf.Files{CA: p.file("ca.pem")}, "")
	must(t, err)
	p.bare = b.Client(tlsconf.RoleServer, tlsconf.RoleCoordinator)
	return p
}

func (p tlsPKI) file(name string) string { return filepath.Join(p.dir, name) }

// lines are the config lines naming the cluster's files.
func (p tlsPKI) lines() string {
	return fmt.Sprintf("tls_ca %s\ntls_cert %s\ntls_key %s\ntls_coord_cert %s\ntls_coord_key %s\n",
		p.file("ca.pem"), p.file("server.pem"), p.file("server-key.pem"), p.file("coordinator.pem"), p.file("coordinator-key.pem"))
}

// foreign is a client configuration presenting a client certificate of
// the other CA (and trusting the cluster's CA, so the refusal is the
// server's).
func (p tlsPKI) foreign(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(p.other, "client.pem"), filepath.Join(p.other, "client-key.pem"))
	must(t, err)
	cfg := p.bare.Clone()
	cfg.Certificates = []tls.Certificate{cert}
	return cfg
}

func startTLSCluster(t *testing.T, n int, p tlsPKI) *testcluster.Cluster {
	t.Helper()
	return startTLSClusterWith(t, n, p, testcluster.Options{})
}

// startTLSClusterWith is startTLSCluster with more options (o.Config and
// o.ClientOptions are set here).
func startTLSClusterWith(t *testing.T, n int, p tlsPKI, o testcluster.Options) *testcluster.Cluster {
	t.Helper()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "%d\n", n)
	for range n {
		cfg.WriteString("localhost 0 0 0\n")
	}
	cfg.WriteString(p.lines())
	o.Config, o.ClientOptions = cfg.String(), []client.Option{client.WithTLS(p.client)}
	return testcluster.Start(t, o)
}

// TestTLSClusterFailoverUnderLoad: every link is TLS; a primary is killed
// under load: recovery as without TLS, no acknowledged write lost, the
// history linearizable.
func TestTLSClusterFailoverUnderLoad(t *testing.T) {
	const n = 3
	p := newTLSPKI(t)
	c := startTLSCluster(t, n, p)
	cls := make([]*client.Client, 4)
	for i := range cls {
		cls[i] = c.Client(client.WithConnsPerServer(1 + i%2))
	}
	c.WaitRecovered(t, 10*time.Second)
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "tls-failover"),
		Workers: 8, OpTimeout: foOpTimeout, Seed: seed(t)})
	l := startLedger(t, cls, 3, "ledger-tls-failover", foOpTimeout)
	waitProgress(t, c, "load before the kill", w.Done, 200, 500*time.Millisecond)
	before := c.Status(t)
	v := c.KillServer(t, 1)
	after := c.WaitRecovered(t, recoverTimeout, v)
	checkReplaced(t, before, after, 1)
	waitProgress(t, c, "load after recovery", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cls[0])
	// The CLI with -tls-ca and a client certificate.
	args := []string{"-tls-ca", p.file("ca.pem"), "-tls-cert", p.file("client.pem"), "-tls-key", p.file("client-key.pem")}
	if r := runCLI(t, c.Bin, c.Addr, "", append(args, "P", "tls-cli", "over tls")...); r.code != 0 {
		t.Fatalf("bin/client P over TLS: exit %d: %s", r.code, r.stderr)
	}
	if r := runCLI(t, c.Bin, c.Addr, "", "-tls-ca", p.file("ca.pem"), "G", "tls-cli"); r.code != 0 || r.stdout != "over tls\n" {
		t.Fatalf("bin/client G over TLS: exit %d: %q %s", r.code, r.stdout, r.stderr)
	}
}

// TestTLSRefusals: a plaintext client, a client certificate from another
// CA and a client certificate on a server's replication port are each
// refused with a clear error; a plaintext connection to an internal port
// gets the same answer as one to a client port. The cluster keeps serving.
func TestTLSRefusals(t *testing.T) {
	p := newTLSPKI(t)
	c := startTLSCluster(t, 3, p)
	st := c.WaitRecovered(t, 10*time.Second)
	cl := c.Client()
	live := checkServes(t, cl, "tls-refusals", 12)

	t.Run("plaintext Go client", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.Dial(ctx, c.Addr)
		if !errors.Is(err, client.ErrAuth) || !strings.Contains(err.Error(), "requires TLS") {
			t.Fatalf("err = %v, want ErrAuth saying the port requires TLS", err)
		}
	})
	t.Run("plaintext bin/client", func(t *testing.T) {
		r := runCLI(t, c.Bin, c.Addr, "", "G", "x")
		if r.code != 4 || !strings.Contains(r.stderr, "requires TLS") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("exit %d, stderr %q: want 4 and one line saying the port requires TLS", r.code, r.stderr)
		}
	})
	t.Run("plaintext on every server port", func(t *testing.T) {
		s := st.Servers[0]
		for _, addr := range []string{s.Addr, s.PeerAddr, s.CtlAddr} {
			f := plaintextHello(t, addr)
			if f.Status != wire.StatusUnauthenticated || !strings.Contains(string(f.Value), "requires TLS") {
				t.Errorf("%s: answer %s %q, want UNAUTHENTICATED saying the port requires TLS", addr, f.Status, f.Value)
			}
		}
	})
	t.Run("client certificate from another CA", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := client.Dial(ctx, c.Addr, client.WithTLS(p.foreign(t)))
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
		testcluster.Eventually(t, 5*time.Second, "the coordinator logs the refused certificate", func() bool {
			return strings.Contains(c.Log(), "certificate signed by unknown authority")
		})
	})
	t.Run("client certificate on a replication port", func(t *testing.T) {
		peer := st.Servers[1].PeerAddr
		err := tlsExchange(peer, p.client)
		if err == nil || !strings.Contains(err.Error(), "bad certificate") {
			t.Fatalf("TLS to %s with a client certificate: %v, want the server's bad-certificate alert", peer, err)
		}
		testcluster.Eventually(t, 5*time.Second, "the server logs the role it refused", func() bool {
			return strings.Contains(c.Log(), "the peer's certificate has role client, this link admits server")
		})
		// And no certificate at all on the control port.
		if err := tlsExchange(st.Servers[1].CtlAddr, p.bare); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("TLS without a certificate to a control port: %v, want a certificate error", err)
		}
	})
	checkStill(t, cl, live, "after the refusals")
}

// plaintextHello sends a HELLO in clear to addr and returns the answer
// (the connection must be closed after it).
func plaintextHello(t *testing.T, addr string) wire.Frame {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	must(t, err)
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpHello, ID: 7, Value: []byte("not-the-secret")}))
	must(t, err)
	b, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("%s: %v (want the answer, then EOF)", addr, err)
	}
	f, n, err := wire.Decode(b, 0)
	if err != nil || n == 0 || n != len(b) || f.ID != 7 {
		t.Fatalf("%s: answered %q (%v), want one frame answering id 7", addr, b, err)
	}
	return f
}

// tlsExchange handshakes with addr as cfg, writes a frame and reads: the
// error of the first step that fails (TLS 1.3 servers judge a client's
// certificate after the client's handshake ends: the refusal arrives on
// the read).
func tlsExchange(addr string, cfg *tls.Config) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpHello, ID: 1})); err != nil {
		return err
	}
	_, err = nc.Read(make([]byte, 64))
	if err == nil {
		return errors.New("the server answered")
	}
	return err
}

// TestTLSCaptureHoldsNoValuesOrSecret records the loopback traffic
// (tcpdump) while a TLS cluster takes writes of random values and fails
// over: the capture holds none of the values and not the cluster secret,
// while a control value sent in clear in the same capture is found.
func TestTLSCaptureHoldsNoValuesOrSecret(t *testing.T) {
	tcpdump := needTcpdump(t)
	p := newTLSPKI(t)
	// The capture starts before the cluster: the HELLOs that carry the
	// cluster secret (heartbeats, control and replication links) are sent
	// at start-up and again after the failover below.
	pcap := filepath.Join(t.TempDir(), "lo.pcap")
	cmd := exec.Command(tcpdump, "-i", "lo", "-U", "-B", "32768", "-s", "0", "-w", pcap, "tcp")
	var tdErr syncBuf
	cmd.Stderr = &tdErr
	must(t, cmd.Start())
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGINT)
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	testcluster.Eventually(t, 10*time.Second, "tcpdump listening", func() bool { return strings.Contains(tdErr.String(), "listening on") })

	c := startTLSCluster(t, 3, p)
	c.WaitRecovered(t, 10*time.Second)
	secret := clusterSecret(t, c)
	var mark [8]byte
	_, _ = rand.Read(mark[:])
	prefix := "tls-capture-" + hex.EncodeToString(mark[:]) + "-"
	cl := c.Client()
	var values []string
	put := func(i int) {
		v := fmt.Sprintf("%svalue-%d", prefix, i)
		ctx, cancel := context.WithTimeout(context.Background(), foOpTimeout)
		defer cancel()
		if err := cl.Put(ctx, fmt.Sprintf("cap-%d", i), []byte(v)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		values = append(values, v)
	}
	for i := range 300 {
		put(i)
	}
	// A failover: a respawned server says HELLO again and is re-seeded.
	v := c.KillServer(t, 0)
	c.WaitRecovered(t, recoverTimeout, v)
	for i := 300; i < 400; i++ {
		put(i)
	}
	// The control, sent last: a value written in clear on a port of the
	// same capture. Once tcpdump has written it (-U: packet by packet, in
	// order), it has written everything before it.
	control := prefix + "sent-in-clear"
	if nc, err := net.Dial("tcp", c.Addr); err == nil {
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpHello, ID: 9, Value: []byte(control)}))
		_, _ = io.ReadAll(nc) // (answered and closed: the port needs TLS)
		nc.Close()
	}
	var raw []byte
	testcluster.Eventually(t, 20*time.Second, "the control value in the capture", func() bool {
		raw, _ = os.ReadFile(pcap)
		return bytes.Contains(raw, []byte(control))
	})
	stop()
	if m := regexp.MustCompile(`(\d+) packets dropped by kernel`).FindStringSubmatch(tdErr.String()); m == nil || m[1] != "0" {
		t.Fatalf("tcpdump dropped packets: the capture is incomplete: %s", tdErr.String())
	}
	if bytes.Contains(raw, []byte(prefix+"value-")) {
		for _, v := range values {
			if bytes.Contains(raw, []byte(v)) {
				t.Errorf("the capture holds written value %q", v)
				break
			}
		}
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Error("the capture holds the cluster secret")
	}
	t.Logf("capture: %d bytes of loopback traffic from before the start to the end, %d values written over TLS, none found; the secret not found", len(raw), len(values))
}

// syncBuf is a bytes.Buffer a child process writes while the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// needTcpdump returns tcpdump's path, installing it with apt-get when
// missing and possible, or skips the test.
func needTcpdump(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("tcpdump"); err == nil {
		return p
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("apt-get"); err == nil {
			_ = exec.Command("apt-get", "install", "-y", "-q", "tcpdump").Run()
			if p, err := exec.LookPath("tcpdump"); err == nil {
				return p
			}
		}
	}
	t.Skip("tcpdump is not installed and could not be (needs root and apt-get)")
	return ""
}

// TestTLSRemote: servers on namespace hosts over real sshd with TLS: the
// coordinator copies their TLS files with copy_bin (the key 0600), the
// servers replicate over TLS between hosts, and a killed server comes
// back over ssh.
func TestTLSRemote(t *testing.T) {
	const n = 2
	h := nethost.Up(t, n)
	p := newTLSPKI(t)
	remoteBin := filepath.Join(t.TempDir(), "copied", "server")
	c := startRemote(t, h, n, "copy_bin yes\nremote_bin "+remoteBin+"\n"+p.lines(),
		testcluster.Options{ClientOptions: []client.Option{client.WithTLS(p.client)}})
	before := c.WaitRecovered(t, 20*time.Second)
	for i, s := range before.Servers {
		checkOnHost(t, h, s, i+1)
	}
	// The copies, in the remote working directory (the namespaces share
	// the file system), with the key private.
	key := filepath.Join(c.Dir, "ftkv-tls", "server-key.pem")
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("copied key %s: %v, mode %v; want 0600", key, err, fi.Mode().Perm())
	}
	for i, s := range before.Servers {
		if args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID)); !bytes.Contains(args, []byte("ftkv-tls/server-key.pem")) {
			t.Errorf("server %d was not started with the copied key: %q", i, bytes.ReplaceAll(args, []byte{0}, []byte(" ")))
		}
	}
	cl := c.Client()
	live := checkServes(t, cl, "tls-remote", 10)
	v := remoteVictim(t, c, h, 1)
	c.WaitRecovered(t, remoteRecover, v)
	checkStill(t, cl, live, "after the kill")
	t.Logf("ran: %d servers over ssh on %s, %s with TLS; kill -9 recovered", n, h.Dest(1), h.Dest(2))
}

// TestTLSWithTheOperatorsOwnCertificate: the three lines SPEC names
// (tls_ca, tls_cert, tls_key) with a CA and one certificate made by
// openssl, as an operator's own PKI makes them: no ftkv role in it. Every
// process uses that certificate (a group of three coordinators too, with
// no tls_coord_* lines), the cluster serves and fails over over TLS, a
// client in clear is refused, and so is another certificate of the same
// CA on every internal port: the coordinators' Raft port has no other
// guard (a review took the group over with one when role-less
// certificates were admitted there). It used to refuse to start: it
// wanted the coordinators' certificate and a role in every certificate.
func TestTLSWithTheOperatorsOwnCertificate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("FTKV_REQUIRE_NETNS") == "1" {
			t.Fatal("openssl is not installed (.ci/run installs it)")
		}
		t.Skip("openssl is not installed")
	}
	t.Log("ran with", openssl)
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(openssl, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	run(append(append([]string{"req", "-x509"}, ec...), "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=operator CA")...)
	must(t, os.WriteFile(filepath.Join(dir, "ext.cnf"), []byte("subjectAltName=DNS:localhost,IP:127.0.0.1\n"), 0o644))
	for _, name := range []string{"cert", "other"} {
		run(append(append([]string{"req"}, ec...), "-keyout", name+"-key.pem", "-out", name+".csr", "-subj", "/CN=localhost")...)
		run("x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
			"-out", name+".pem", "-days", "2", "-extfile", "ext.cnf")
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	bare, err := tlsconf.Load(tlsconf.Files{CA: f("ca.pem")}, "")
	must(t, err)
	c := testcluster.Start(t, testcluster.Options{
		Coordinators: 3,
		Config: fmt.Sprintf("3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\ntls_ca %s\ntls_cert %s\ntls_key %s\n",
			f("ca.pem"), f("cert.pem"), f("cert-key.pem")),
		ClientOptions: []client.Option{client.WithTLS(bare.Client(tlsconf.RoleServer, tlsconf.RoleCoordinator))},
	})
	st := c.WaitRecovered(t, 20*time.Second)
	cl := c.Client()
	// Another certificate of the CA, on every internal port.
	oc, err := tls.LoadX509KeyPair(f("other.pem"), f("other-key.pem"))
	must(t, err)
	other := bare.Client()
	other.Certificates = []tls.Certificate{oc}
	co := c.Coord(0)
	for _, p := range []port{{"a coordinator's Raft port", co.RaftAddr}, {"a coordinator's servers port", co.ServersAddr},
		{"a server's control port", st.Servers[0].CtlAddr}, {"a server's replication port", st.Servers[0].PeerAddr}} {
		if err := tlsExchange(p.addr, other); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s (%s) with another certificate of the CA: %v, want a certificate error", p.name, p.addr, err)
		}
	}
	live := checkServes(t, cl, "own-cert", 12)
	if r := runCLI(t, c.Bin, c.Addr, "", "-tls-ca", f("ca.pem"), "P", "own-cert-cli", "over tls"); r.code != 0 {
		t.Fatalf("bin/client P over TLS: exit %d: %s", r.code, r.stderr)
	}
	if r := runCLI(t, c.Bin, c.Addr, "", "G", "own-cert-cli"); r.code != 4 || !strings.Contains(r.stderr, "requires TLS") {
		t.Fatalf("bin/client in clear: exit %d, stderr %q: want 4, the port requires TLS", r.code, r.stderr)
	}
	// A failover and a re-seeding: the coordinator's control links and
	// the servers' replication links, all on the one certificate.
	before := c.Status(t)
	v := c.KillServer(t, 1)
	after := c.WaitRecovered(t, recoverTimeout, v)
	checkReplaced(t, before, after, 1)
	checkStill(t, cl, live, "after the failover")
	if r := runCLI(t, c.Bin, c.Addr, "", "-tls-ca", f("ca.pem"), "G", "own-cert-cli"); r.code != 0 || r.stdout != "over tls\n" {
		t.Fatalf("bin/client G over TLS after the failover: exit %d: %q %s", r.code, r.stdout, r.stderr)
	}
}
