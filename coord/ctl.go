package coord

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ftkv/internal/frameio"
	"ftkv/internal/netopt"
	"ftkv/wire"
)

// control sends one order on nd's control link and waits for the answer.
// The link is cached per incarnation, not per address: with fixed ports
// a respawned server has the control address of the dead one, and a link
// to the dead one must never carry an order to the new one (hole 8). An
// order that fails on a cached link (its server may have closed it while
// idle) is sent once more on a fresh one.
func (c *Coordinator) control(ctx context.Context, nd *node, f *wire.Frame) (wire.Frame, error) {
	c.mu.Lock()
	cc := nd.ctl
	addr, inc := nd.hb.CtlAddr, nd.inc
	c.mu.Unlock()
	cached := cc != nil && cc.addr == addr && cc.inc == inc
	if cached && cc.busy.Load() {
		// An order still in flight on the cached link (a view whose
		// replication link the server is still connecting): this one
		// must not queue behind it. A newer view makes the server give
		// up on the older one's link (a drop of a secondary it cannot
		// reach waited 5 s, the shard's writes with it).
		one, err := c.dialCtl(ctx, addr)
		if err != nil {
			return wire.Frame{}, err
		}
		defer one.close()
		return one.roundTrip(ctx, f)
	}
	prev := cc // the cached link a fresh one replaces
	for {
		if !cached {
			var err error
			cc, err = c.dialCtl(ctx, addr)
			if err != nil {
				return wire.Frame{}, err
			}
			cc.inc = inc
			c.mu.Lock()
			old := nd.ctl
			mine := old == prev
			if mine {
				nd.ctl = cc
			}
			c.mu.Unlock()
			if !mine {
				// Another order cached a link of its own meanwhile (it
				// may be waiting for its answer on it): this one is used
				// once. (Replaced, it was closed under an order in
				// flight: a review.)
				defer cc.close()
			} else if old != nil && old != cc {
				old.close()
			}
		}
		ans, err := cc.roundTrip(ctx, f)
		if err == nil {
			return ans, nil
		}
		cc.close()
		c.mu.Lock()
		if nd.ctl == cc {
			nd.ctl, prev = nil, nil
		} else {
			// Another order cached a link of its own meanwhile (for a
			// respawned incarnation, say): the retry must not replace it.
			prev = cc
		}
		c.mu.Unlock()
		if !cached || ctx.Err() != nil {
			return ans, err
		}
		cached = false // once more, on a fresh link
	}
}

// ctlConn is the coordinator's authenticated connection to a server's
// control port; orders are sent one at a time.
type ctlConn struct {
	addr string
	inc  uint64 // the incarnation it was dialled for
	mu   sync.Mutex
	busy atomic.Bool // an order is in flight
	nc   net.Conn
	br   *bufio.Reader
	next uint64
	// limit bounds an order sent without a deadline in its ctx.
	limit time.Duration
}

// errNotReported: a server that has not reported yet (still starting)
// has no control address to give an order to.
var errNotReported = errors.New("server has not reported its control address")

// dialCtl opens an authenticated control connection to a server's
// control port at addr.
func (c *Coordinator) dialCtl(ctx context.Context, addr string) (*ctlConn, error) {
	return c.dialAuthed(ctx, addr, false)
}

// dialPeer opens an authenticated connection to another coordinator's
// servers port at addr (with TLS, its certificate is a coordinator's).
func (c *Coordinator) dialPeer(ctx context.Context, addr string) (*ctlConn, error) {
	return c.dialAuthed(ctx, addr, true)
}

func (c *Coordinator) dialAuthed(ctx context.Context, addr string, peer bool) (*ctlConn, error) {
	if addr == "" {
		return nil, errNotReported
	}
	nc, err := netopt.Dialer(c.opts.Timing.Dial).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if t := c.opts.tls; t != nil {
		if nc, err = t.handshake(ctx, nc, c.opts.Timing.Handshake, peer); err != nil {
			return nil, err
		}
	}
	cc := &ctlConn{addr: addr, nc: nc, br: bufio.NewReader(nc), limit: c.opts.Timing.Control}
	ans, err := cc.roundTrip(ctx, &wire.Frame{Op: wire.OpHello, Value: []byte(c.clusterSecret())})
	if err == nil && ans.Status != wire.StatusOK {
		err = fmt.Errorf("control link refused: %s", ans.Value)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return cc, nil
}

func (cc *ctlConn) roundTrip(ctx context.Context, f *wire.Frame) (wire.Frame, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.busy.Store(true)
	defer cc.busy.Store(false)
	cc.next++
	f.ID = cc.next
	dl := time.Now().Add(cc.limit)
	if d, ok := ctx.Deadline(); ok {
		dl = d
	}
	_ = cc.nc.SetDeadline(dl)
	// ctx ending (not only its deadline) ends the wait: a start that
	// leaves a server with a failed log out cancels the first view's
	// push, which a server may hold for the whole re-seeding limit.
	stop := context.AfterFunc(ctx, func() { _ = cc.nc.SetDeadline(time.Now()) })
	defer stop()
	if _, err := cc.nc.Write(wire.Append(nil, f)); err != nil {
		return wire.Frame{}, err
	}
	for {
		ans, err := frameio.ReadFrame(cc.br)
		if err != nil {
			return wire.Frame{}, err
		}
		if ans.ID == f.ID {
			return ans, nil
		}
	}
}

func (cc *ctlConn) close() { _ = cc.nc.Close() }

// replyErr is the error of an order's round trip: the transport's, or
// the server's refusal (any status but OK) with its reason.
func replyErr(ans wire.Frame, err error) error {
	if err == nil && ans.Status != wire.StatusOK {
		err = fmt.Errorf("%s: %s", ans.Status, ans.Value)
	}
	return err
}
