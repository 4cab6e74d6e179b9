package connlimit

import (
	"bufio"
	"net"
	"testing"
	"time"

	"ftkv/internal/frameio"
	"ftkv/wire"
)

// TestEvictSilentConnections: at MaxConns on a client port, a new
// connection closes the oldest one that never sent a byte (silent for
// SilentAfter at least) instead of being refused: 10,000 connections that
// never spoke locked every new client out of a coordinator, a server and
// the gateway, "max clients reached" going to the newcomer, not to the
// offender (an attack). A connection that spoke is never closed for it;
// with every slot spoken for, a new one is refused as before.
func TestEvictSilentConnections(t *testing.T) {
	old := SilentAfter
	SilentAfter = 50 * time.Millisecond // timing: exception — the silent ones are old enough at once
	t.Cleanup(func() { SilentAfter = old })
	h := &getServer{val: []byte("v")}
	p := listen(t, h, Config{MaxConns: 3})
	ask := func(nc net.Conn) {
		t.Helper()
		if _, err := nc.Write(gets(1, 1)); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := frameio.ReadFrame(bufio.NewReader(nc)); err != nil {
			t.Fatalf("a connection that spoke got no answer: %v", err)
		}
		_ = nc.SetReadDeadline(time.Time{})
	}
	a := dial(t, p)
	ask(a)
	b := dial(t, p)
	eventually(t, 5*time.Second, "two open", func() bool { return p.Open() == 2 })
	c := dial(t, p)
	eventually(t, 5*time.Second, "three open", func() bool { return p.Open() == 3 })
	eventually(t, 5*time.Second, "two silent listed", func() bool { return unauthListed(p) == 2 })
	time.Sleep(2 * SilentAfter)
	d := dial(t, p) // closes b, the oldest silent
	if !closedByServer(b, 5*time.Second) {
		t.Fatal("the connection silent the longest was not closed at MaxConns: the newcomer was refused instead")
	}
	ask(d)
	time.Sleep(2 * SilentAfter)
	e := dial(t, p) // closes c
	if !closedByServer(c, 5*time.Second) {
		t.Fatal("the second silent connection was not closed")
	}
	ask(e)
	eventually(t, 5*time.Second, "three open", func() bool { return p.Open() == 3 })
	f := dial(t, p) // every slot spoke: refused
	_ = f.SetReadDeadline(time.Now().Add(2 * time.Second))
	if fr, err := frameio.ReadFrame(bufio.NewReader(f)); err != nil || fr.Status != wire.StatusUnavailable || string(fr.Value) != "max clients reached" {
		t.Fatalf("a connection with every slot spoken for: %v %s %q, want UNAVAILABLE max clients reached", err, fr.Status, fr.Value)
	}
	for _, nc := range []net.Conn{a, d, e} {
		if closedByServer(nc, 100*time.Millisecond) {
			t.Fatal("a connection that spoke was closed")
		}
	}
}
