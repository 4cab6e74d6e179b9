package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// sendAndCloseGated sends pre (answer read), then in, closes, and releases the
// store's gate once the close was seen; it waits until marker is set.
func sendAndCloseGated(t *testing.T, st *memStore, g *Gateway, pre, preWant, in, marker string) {
	t.Helper()
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if pre != "" {
		if _, err := io.WriteString(nc, pre); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(preWant))
		if _, err := io.ReadFull(bufio.NewReader(nc), buf); err != nil || string(buf) != preWant {
			t.Fatalf("pre: %q %v", buf, err)
		}
	}
	if _, err := io.WriteString(nc, in); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	time.Sleep(200 * time.Millisecond)
	close(st.gate)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if v, _ := st.Get(context.Background(), marker); v != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("marker %q never set", marker)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The commands of a client that closed its connection right after sending
// them (review of c92100a): its reads are skipped, everything else runs,
// and what decides how the writes run (MULTI…DISCARD, QUIT, AUTH) is
// obeyed as for a live client.

// A MULTI whose client closed before EXEC: a live client has every
// command up to EXEC/DISCARD refused; Redis discards the transaction.
func TestClosedClientsDiscardedMultiNotApplied(t *testing.T) {
	st := newMemStore()
	st.gate = make(chan struct{})
	g := start(t, st, nil)
	sendAndCloseGated(t, st, g, "", "",
		cmd("SET", "k", "1")+cmd("MULTI")+cmd("SET", "tx", "1")+cmd("INCR", "txc")+cmd("DISCARD")+cmd("SET", "last", "x"), "last")
	if v, _ := st.Get(context.Background(), "tx"); v != nil {
		t.Errorf("tx = %q: a SET inside a discarded MULTI was applied after the client closed", v)
	}
	if v, _ := st.Get(context.Background(), "txc"); v != nil {
		t.Errorf("txc = %q: an INCR inside a discarded MULTI was applied", v)
	}
}

// Commands after QUIT never run for a live client (Redis: nothing after
// QUIT); they run when the client closed before QUIT was reached.
func TestClosedClientsNothingRunsAfterQuit(t *testing.T) {
	st := newMemStore()
	st.gate = make(chan struct{})
	g := start(t, st, nil)
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(nc, cmd("SET", "k", "1")+cmd("QUIT")+cmd("SET", "after", "1"))
	nc.Close()
	time.Sleep(200 * time.Millisecond)
	close(st.gate)
	time.Sleep(500 * time.Millisecond)
	if v, _ := st.Get(context.Background(), "after"); v != nil {
		t.Errorf("after = %q: a SET sent after QUIT ran", v)
	}
}

// AUTH as another user, then writes, then close: the writes run as that
// user, as a live client's (NOPERM for a reader), not as the previous one.
func TestClosedClientsAuthRuns(t *testing.T) {
	f := &fakeUsers{}
	st := newMemStore()
	st.gate = make(chan struct{})
	g := start(t, st, func(c *Config) { c.Authenticate = f.check })
	sendAndCloseGated(t, st, g, cmd("AUTH", "writer", "writer-pw"), "+OK\r\n",
		cmd("SET", "k", "1")+cmd("AUTH", "reader", "reader-pw")+cmd("SET", "asreader", "1")+cmd("AUTH", "writer", "writer-pw")+cmd("SET", "last", "x"), "last")
	if v, _ := st.Get(context.Background(), "asreader"); v != nil {
		t.Errorf("asreader = %q: a SET sent after AUTH reader ran (with writer's rights)", v)
	}
}

// With users, a client that sends AUTH and its writes and half-closes (a
// script: printf 'AUTH …\r\nSET …\r\n' | nc -N) has its writes run.
func TestClosedClientsLoginThenWrites(t *testing.T) {
	f := &fakeUsers{}
	st := newMemStore()
	g := start(t, st, func(c *Config) { c.Authenticate = f.check })
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(nc, cmd("AUTH", "writer", "writer-pw")+cmd("SET", "k", "1"))
	_ = nc.(*net.TCPConn).CloseWrite()
	defer nc.Close()
	time.Sleep(time.Second)
	if v, _ := st.Get(context.Background(), "k"); v == nil {
		t.Errorf("k absent: an authenticated client's SET sent before its half-close did not run")
	}
}

// Without any delay in the store (gnet mostly reads the commands and the
// end of input in one pass): a discarded MULTI's SET never applies.
func TestClosedClientsDiscardedMultiNoDelay(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	applied := 0
	for i := 0; i < 20; i++ {
		nc, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		k := "tx" + itoa(int64(i))
		io.WriteString(nc, cmd("MULTI")+cmd("SET", k, "1")+cmd("DISCARD")+cmd("SET", "last"+k, "x"))
		nc.Close()
		for j := 0; j < 200; j++ {
			if v, _ := st.Get(context.Background(), "last"+k); v != nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if v, _ := st.Get(context.Background(), k); v != nil {
			applied++
		}
	}
	if applied > 0 {
		t.Errorf("%d of 20 discarded transactions applied their SET", applied)
	}
}

// A SET after QUIT never runs, without any delay either.
func TestClosedClientsQuitNoDelay(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	ran := 0
	for i := 0; i < 20; i++ {
		nc, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		k := "after" + itoa(int64(i))
		io.WriteString(nc, cmd("QUIT")+cmd("SET", k, "1"))
		nc.Close()
		time.Sleep(20 * time.Millisecond)
		if v, _ := st.Get(context.Background(), k); v != nil {
			ran++
		}
	}
	if ran > 0 {
		t.Errorf("%d of 20: a SET sent after QUIT ran", ran)
	}
}
