package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"ftkv/internal/tlsconf"
)

// TestTLSCertificateRotation: an operator replaces the coordinator's and
// the servers' certificate files (new keys from the same CA) while the
// cluster runs: within a few seconds new connections to the coordinator
// and to every server are shown the new certificates, the links already
// up keep working, writes and reads go on, and a server killed afterwards
// comes back (its respawn loads the new files and links with peers still
// holding the old ones' sessions).
func TestTLSCertificateRotation(t *testing.T) {
	p := newTLSPKI(t)
	c := startTLSCluster(t, 3, p)
	st := c.WaitRecovered(t, 10*time.Second)
	serial := func(addr string) *big.Int {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, p.bare)
		if err != nil {
			t.Fatalf("TLS to %s: %v", addr, err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	oldCoord, oldServer := serial(c.Addr), serial(st.Servers[0].Addr)

	caPEM, err := os.ReadFile(p.file("ca.pem"))
	must(t, err)
	caKey, err := os.ReadFile(p.file("ca-key.pem"))
	must(t, err)
	ca, err := tlsconf.ParseCA(caPEM, caKey)
	must(t, err)
	for _, r := range []tlsconf.Role{tlsconf.RoleServer, tlsconf.RoleCoordinator} {
		cp, kp, err := ca.Issue(r)
		must(t, err)
		for name, b := range map[string][]byte{string(r) + ".pem": cp, string(r) + "-key.pem": kp} {
			must(t, os.WriteFile(p.file(name+".new"), b, 0o600))
			must(t, os.Rename(p.file(name+".new"), p.file(name)))
		}
	}
	newCoord, newServer := serialOfFile(t, p.file("coordinator.pem")), serialOfFile(t, p.file("server.pem"))

	deadline := time.Now().Add(10 * time.Second)
	for {
		got := []*big.Int{serial(c.Addr)}
		for _, s := range st.Servers {
			got = append(got, serial(s.Addr))
		}
		ok := got[0].Cmp(newCoord) == 0
		for _, g := range got[1:] {
			ok = ok && g.Cmp(newServer) == 0
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the files were replaced: coordinator shows %v (old %v, new %v), servers %v (new %v)",
				got[0], oldCoord, newCoord, got[1:], newServer)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if oldServer.Cmp(newServer) == 0 || oldCoord.Cmp(newCoord) == 0 {
		t.Fatal("the new certificates have the old serials")
	}
	if n := strings.Count(c.Log(), "TLS certificate reloaded"); n < 4 {
		t.Errorf("%d reloads logged; want the coordinator's and the 3 servers'", n)
	}

	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 30 {
		must(t, cl.Put(ctx, fmt.Sprintf("rot-%d", i), []byte("v")))
	}
	v := c.KillServer(t, 1)
	c.WaitRecovered(t, recoverTimeout, v)
	fresh := c.Client() // new connections, new handshakes
	for i := range 30 {
		got, err := fresh.Get(ctx, fmt.Sprintf("rot-%d", i))
		if err != nil || string(got) != "v" {
			t.Fatalf("rot-%d after rotation and a failover: %q, %v", i, got, err)
		}
	}
}

// serialOfFile is the serial number of the PEM certificate at path.
func serialOfFile(t *testing.T, path string) *big.Int {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	must(t, err)
	return c.SerialNumber
}
