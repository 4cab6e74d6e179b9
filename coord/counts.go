package coord

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/connlimit"
	"ftkv/status"
	"ftkv/wire"
)

// The leader answers a client's STATUS with the key counts every live
// server gives when asked then, not those of its last heartbeat (a
// fifth of the failure timeout old at most: a contract check wrote 200
// keys and read 120 in status): writes acknowledged before a status
// request are counted in its answer. The requests wait for a round of
// questions that starts after they came; one round runs at a time, on
// one goroutine, and answers every request that waited for it. A
// connection with statusWaitPerConn requests waiting, or a port with
// statusWaitMax, is answered at once with the heartbeats' counts: a
// client that pipelines STATUS without reading held a goroutine per
// request, 42,000 of them for 20 connections (a review).
const (
	statusWaitPerConn = 8
	statusWaitMax     = 1024
)

// A round starts half a heartbeat period after the previous one started
// at the soonest: requests that come without pause (a flood, or a
// monitor polling) ask the servers at most twice a heartbeat period, each
// round for every request that waited. (Asked up to 46 times a second
// while it served 500 connections that never read their 1 MiB answers,
// a server missed an honest client's 2 s deadline in 3 of 3 runs of
// TestHostileManySlowReaders; none at most twice a heartbeat period, and
// none before, nor without the questions.)

// keyCounts is one incarnation's key counts as it answered them, under
// the view of epoch (the one it had applied).
type keyCounts struct{ inc, epoch, primary, secondary uint64 }

// statusWaiter is a client's STATUS waiting for the next round.
type statusWaiter struct {
	conn  gnet.Conn
	id    uint64
	whole bool // it may see the whole status (seesWhole)
	lim   *connlimit.State
}

// statusRounds holds the STATUS requests waiting for a round.
type statusRounds struct {
	mu      sync.Mutex
	waiting []statusWaiter
	perConn map[gnet.Conn]int
	running bool      // a round runs (statusLoop)
	began   time.Time // when the last round began
}

// queueStatus queues conn's STATUS request id for the next round, and
// reports false when it may not wait (too many wait): it is to be
// answered at once. Only on conn's event loop.
func (c *Coordinator) queueStatus(conn gnet.Conn, id uint64) bool {
	r := &c.rounds
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.waiting) >= statusWaitMax || r.perConn[conn] >= statusWaitPerConn {
		return false
	}
	if r.perConn == nil {
		r.perConn = map[gnet.Conn]int{}
	}
	r.perConn[conn]++
	r.waiting = append(r.waiting, statusWaiter{conn: conn, id: id, whole: c.seesWhole(conn), lim: connlimit.Begin(conn, wire.HeaderSize)})
	if !r.running {
		r.running = true
		go c.statusLoop()
	}
	return true
}

// statusLoop runs rounds as long as requests wait for one.
func (c *Coordinator) statusLoop() {
	r := &c.rounds
	for {
		r.mu.Lock()
		if len(r.waiting) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		wait := time.Until(r.began.Add(c.opts.Timing.Heartbeat / 2))
		r.mu.Unlock()
		if wait > 0 {
			time.Sleep(wait)
		}
		r.mu.Lock()
		batch := r.waiting
		r.waiting, r.began = nil, time.Now()
		r.mu.Unlock()
		st := c.freshStatus(c.askCounts())
		var whole, redacted []byte
		for _, w := range batch {
			if w.whole && whole == nil {
				whole, _ = json.Marshal(st)
			}
		}
		for _, w := range batch {
			if !w.whole && redacted == nil {
				st.Redact()
				redacted, _ = json.Marshal(st)
			}
		}
		for _, w := range batch {
			b := redacted
			if w.whole {
				b = whole
			}
			_ = w.conn.AsyncWrite(wire.Append(nil, &wire.Frame{Op: wire.OpStatus, ID: w.id, Status: wire.StatusOK, Epoch: st.Epoch, Value: b}), connlimit.AfterWrite)
			w.lim.Done(wire.HeaderSize)
		}
		r.mu.Lock()
		for _, w := range batch {
			if r.perConn[w.conn]--; r.perConn[w.conn] <= 0 {
				delete(r.perConn, w.conn)
			}
		}
		r.mu.Unlock()
	}
}

// freshStatus is the status (Status) with the key counts of counts where
// they are of the incarnation shown and no older than its heartbeat's.
func (c *Coordinator) freshStatus(counts map[int]keyCounts) *status.Cluster {
	st := c.Status()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range st.Servers {
		ss := &st.Servers[i]
		kc, ok := counts[ss.ID]
		if !ok || ss.ID < 0 || ss.ID >= len(c.nodes) {
			continue
		}
		if nd := c.nodes[ss.ID]; kc.inc == ss.Incarnation && kc.inc == nd.hb.Incarnation && kc.epoch >= max(nd.hb.Epoch, nd.counted) {
			ss.PrimaryKeys, ss.SecondaryKeys = kc.primary, kc.secondary
		}
	}
	return st
}

// askCounts asks every live member of the view for its key counts on
// its control port, for a heartbeat period at most. Each member's
// question goes on the rounds' own link to it (node.counts; only one
// round runs at a time), never on the orders' (a round that dialled or
// closed the orders' link broke a view's push in flight, and one that
// queued behind a long order waited for it: a review).
func (c *Coordinator) askCounts() map[int]keyCounts {
	type ask struct {
		nd   *node
		id   int
		inc  uint64
		addr string
		cc   *ctlConn
	}
	var asks []ask
	c.mu.Lock()
	for i, nd := range c.nodes {
		if i < len(c.view.Servers) && live(c.view.Servers[i]) && nd.inc == c.view.Servers[i].Incarnation && nd.hb.CtlAddr != "" {
			asks = append(asks, ask{nd, i, nd.inc, nd.hb.CtlAddr, nd.counts})
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timing.Heartbeat)
	defer cancel()
	out := make(map[int]keyCounts, len(asks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, a := range asks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans, cc, err := c.askCount(ctx, a.cc, a.addr, a.inc)
			c.mu.Lock()
			old := a.nd.counts
			a.nd.counts = cc
			c.mu.Unlock()
			if old != nil && old != cc {
				old.close()
			}
			if replyErr(ans, err) != nil {
				return
			}
			if pk, sk, ok := wire.DecodeKeyCounts(ans.Value); ok {
				mu.Lock()
				out[a.id] = keyCounts{inc: a.inc, epoch: ans.Epoch, primary: pk, secondary: sk}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// askCount asks the server at addr (incarnation inc) for its key counts
// on cc if that is a link to it, else on a fresh one, and once more on a
// fresh one if cc fails (the server may have closed it), as control does.
// It returns the answer and the link to keep (nil after an error).
func (c *Coordinator) askCount(ctx context.Context, cc *ctlConn, addr string, inc uint64) (wire.Frame, *ctlConn, error) {
	cached := cc != nil && cc.addr == addr && cc.inc == inc
	for {
		if !cached {
			var err error
			if cc, err = c.dialCtl(ctx, addr); err != nil {
				return wire.Frame{}, nil, err
			}
			cc.inc = inc
		}
		ans, err := cc.roundTrip(ctx, &wire.Frame{Op: wire.OpStatus})
		if err == nil {
			return ans, cc, nil
		}
		cc.close()
		if !cached || ctx.Err() != nil {
			return ans, nil, err
		}
		cached = false
	}
}
