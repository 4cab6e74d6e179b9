package coord

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"ftkv/internal/connlimit"
	"ftkv/internal/frameio"
	"ftkv/wire"
)

// A peer holding the cluster secret that asks how many servers this
// coordinator reaches (the leader's hand-off question) without end, and
// never reads the answers, is held to the servers port's limits like any
// other connection, though the answers are written later from other
// goroutines: reading pauses once answers pile up, and the paused
// connection is no longer read (its kernel holds what it sends, and TCP
// stops it: connlimit's readoff.go), or, if what was read before its
// pause is over its cap, closed (before, it was read on and closed, about
// 2 MiB of each held).
func TestStatusQuestionsWithinLimits(t *testing.T) {
	c := testCoordinator(t)
	c.secret = "s"
	c.leading = false
	c.opts.Cluster.Coordinators = make([]CoordSpec, 3)
	c.budget = connlimit.NewBudget(c.limits().WithDefaults().OutputBudget)
	addr, err := c.listen(&serversHandler{c: c}, "servers", 0)
	if err != nil {
		t.Fatal(err)
	}
	floodQuestions(t, c, addr, "s")
}

// The same for a client asking the leader for the status without end
// (each answer waits for the servers' key counts, off the event loop).
func TestClientStatusQuestionsWithinLimits(t *testing.T) {
	c := testCoordinator(t)
	c.budget = connlimit.NewBudget(c.limits().WithDefaults().OutputBudget)
	addr, err := c.listen(&clientsHandler{c: c}, "clients", 0)
	if err != nil {
		t.Fatal(err)
	}
	floodQuestions(t, c, addr, "")
}

// floodQuestions sends STATUS questions to addr (after a HELLO with
// secret, if any) without reading for 5 s, and checks that the
// connection was held (it could not send them all: not read, or closed
// for a limit), its answers before that there to read.
func floodQuestions(t *testing.T, c *Coordinator, addr, secret string) {
	t.Helper()
	t.Cleanup(func() {
		for _, p := range c.ports {
			_ = p.Stop(context.Background())
		}
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	if secret != "" {
		if _, err := nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpHello, ID: 1, Value: []byte(secret)})); err != nil {
			t.Fatal(err)
		}
		// The answer to HELLO, then questions only.
		if ans, err := frameio.ReadFrame(br); err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("HELLO: %+v, %v", ans, err)
		}
	}
	const questions = 1_000_000
	var batch []byte
	for i := range 10_000 {
		batch = wire.Append(batch, &wire.Frame{Op: wire.OpStatus, ID: uint64(i)})
	}
	wrote := make(chan int)
	go func() {
		n := 0
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for n < questions {
			if _, err := nc.Write(batch); err != nil {
				break
			}
			n += 10_000
		}
		wrote <- n
	}()
	n := <-wrote
	closed := c.ports[0].LimitClosed()
	if n >= questions || closed > 1 {
		t.Fatalf("%d of %d questions taken, %d connections closed for a limit: the peer was not held", n, questions, closed)
	}
	t.Logf("the connection was held after %d questions (closed for a limit: %d)", n, closed)
	// What was answered before it was closed is there to read.
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if ans, err := frameio.ReadFrame(br); err != nil || ans.Op != wire.OpStatus || ans.Status != wire.StatusOK {
		t.Fatalf("answer: %+v, %v", ans, err)
	}
}
