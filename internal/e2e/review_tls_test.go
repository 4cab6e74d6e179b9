package e2e

// Adversarial review of TLS (issue 15) with real processes: the
// coordinator killed while a TLS re-seed is under way, and a flood of TLS
// handshakes that never finish on every port of the cluster.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ftkv/client"
)

// TestReviewTLSCoordKilledMidReseed: every link is TLS; under load a
// server is killed and, as soon as its replacement starts being re-seeded,
// the coordinator is killed with SIGKILL and started again. The restarted
// coordinator re-adopts the servers and finishes (or redoes) the re-seed
// and the hand-back: every server serving in its place, no acknowledged
// write lost, the history linearizable.
func TestReviewTLSCoordKilledMidReseed(t *testing.T) {
	const n = 3
	p := newTLSPKI(t)
	c := startTLSCluster(t, n, p)
	cls := make([]*client.Client, 3)
	for i := range cls {
		cls[i] = c.Client()
	}
	c.WaitRecovered(t, 10*time.Second)
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "review-tls-reseed"),
		Workers: 6, OpTimeout: foOpTimeout, Seed: seed(t)})
	l := startLedger(t, cls, 3, "ledger-review-tls-reseed", foOpTimeout)
	waitProgress(t, c, "load before the kill", w.Done, 200, 500*time.Millisecond)
	reseeds := strings.Count(c.Log(), `"why":"re-seed"`)
	v := c.KillServer(t, 1)
	deadline := time.Now().Add(recoverTimeout)
	for strings.Count(c.Log(), `"why":"re-seed"`) == reseeds {
		if time.Now().After(deadline) {
			c.Fatalf(t, "no re-seed began within %v of killing server 1", recoverTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.KillCoord(t)
	c.RestartCoord(t)
	c.WaitRecovered(t, recoverTimeout, v)
	waitProgress(t, c, "load after the restart", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cls[0])
}

// TestReviewTLSHandshakeFlood: connections to every TLS port (servers'
// client, peer and control ports, the coordinator's client and servers
// ports) that begin a ClientHello and send one more byte each second,
// never finishing it, re-dialled as soon as they are closed. Meanwhile an
// honest client is served on every shard, no server is failed over (the
// epoch and the pids stay), and the flood's connections are closed by the
// handshake bound.
func TestReviewTLSHandshakeFlood(t *testing.T) {
	const n = 3
	p := newTLSPKI(t)
	c := startTLSCluster(t, n, p)
	before := c.WaitRecovered(t, 10*time.Second)
	addrs := []string{c.Addr}
	for _, s := range before.Servers {
		addrs = append(addrs, s.Addr, s.PeerAddr, s.CtlAddr)
	}
	if m := serversPortOf(c.Log()); m != "" {
		addrs = append(addrs, m)
	}
	// The start of a ClientHello: a handshake record header, then a
	// handshake header, dripped a byte a second.
	hello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
	const perAddr = 40
	const floodFor = 12 * time.Second
	var wg sync.WaitGroup
	var mu sync.Mutex
	closedByServer := 0
	end := time.Now().Add(floodFor)
	for _, a := range addrs {
		for range perAddr {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					nc, err := net.DialTimeout("tcp", a, 2*time.Second)
					if err != nil {
						time.Sleep(100 * time.Millisecond)
						continue
					}
					for k := 0; time.Now().Before(end); k++ {
						if _, err := nc.Write(hello[k%len(hello) : k%len(hello)+1]); err != nil {
							break
						}
						_ = nc.SetReadDeadline(time.Now().Add(time.Second))
						var b [64]byte
						if _, err := nc.Read(b[:]); err != nil {
							if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
								mu.Lock()
								closedByServer++
								mu.Unlock()
								break
							}
						}
					}
					nc.Close()
				}
			}()
		}
	}
	cl := c.Client()
	for i := 0; time.Now().Before(end); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, k := range keysOnShards(n, 1, fmt.Sprintf("review-tls-flood-%d", i)) {
			if err := cl.Put(ctx, k, []byte(k)); err != nil {
				cancel()
				c.Fatalf(t, "an honest Put of %q during the flood: %v", k, err)
			}
			if got, err := cl.Get(ctx, k); err != nil || string(got) != k {
				cancel()
				c.Fatalf(t, "an honest Get of %q during the flood: %q, %v", k, got, err)
			}
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	after := c.Status(t)
	if after.Epoch != before.Epoch {
		c.Fatalf(t, "the epoch moved during the flood: %d -> %d (a failover)", before.Epoch, after.Epoch)
	}
	for i, s := range after.Servers {
		if s.PID != before.Servers[i].PID {
			c.Fatalf(t, "server %d was replaced during the flood: pid %d -> %d", i, before.Servers[i].PID, s.PID)
		}
	}
	if closedByServer == 0 {
		t.Fatalf("no flood connection was closed by the handshake bound in %v", floodFor)
	}
	t.Logf("%d flood connections on %d ports closed by the cluster", closedByServer, len(addrs))
}

// serversPortOf is the coordinator's servers port from its log ("servers
// port listening"), or "".
func serversPortOf(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "servers port listening") {
			if i := strings.Index(line, `"addr":"`); i >= 0 {
				rest := line[i+len(`"addr":"`):]
				if j := strings.IndexByte(rest, '"'); j >= 0 {
					return rest[:j]
				}
			}
		}
	}
	return ""
}
