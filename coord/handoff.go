package coord

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"ftkv/wire"
)

// A leader of the group cut off from servers (while it still reaches
// the other coordinators, so it keeps its Raft lead) hears no heartbeat
// from them, and no view of its reaches them: a review saw every fresh
// client meet STALE_EPOCH on every shard for the whole cut when the
// leader was cut from all three servers (16 s, 40 s), and a shard refused
// for the whole cut when it was cut from two (its last copy never got the
// view that made it so). Another coordinator may reach them. So a leader
// that has not heard some live server for half the failure timeout asks
// the others (on their servers ports, with the cluster secret) how many
// servers they reach: each dials every server's control port and logs in
// (as it would to give it a view). If one reaches more servers than the
// leader hears, the leader hands it the lead. Otherwise it keeps the lead
// and goes on as before: a server that nobody reaches is down, or cut off
// from every coordinator, and no hand-off helps.

// reachable is how many servers of the committed view this coordinator
// can give an order to now: it dials each one's control port and logs in,
// all at once, each within d.
func (c *Coordinator) reachable(ctx context.Context, d time.Duration) int {
	c.mu.Lock()
	var addrs []string
	for _, m := range c.view.Servers {
		if live(m) && m.CtlAddr != "" {
			addrs = append(addrs, m.CtlAddr)
		}
	}
	c.mu.Unlock()
	var n atomic.Int32
	var wg sync.WaitGroup
	for _, a := range addrs {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			if cc, err := c.dialCtl(pctx, a); err == nil {
				cc.close()
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// isLeading reports whether this coordinator leads now.
func (c *Coordinator) isLeading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading
}

// live reports whether m serves or re-seeds in its view.
func live(m wire.Member) bool {
	return m.State == wire.StateServing || m.State == wire.StateReseeding
}

// hears is how many live members of the view this leader heard from
// within d, and how many live members there are.
func (c *Coordinator) hears(now time.Time, d time.Duration) (heard, members int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.view.Servers {
		if !live(m) || i >= len(c.nodes) {
			continue
		}
		members++
		last := c.nodes[i].lastSeen
		if c.coreAt.After(last) {
			last = c.coreAt // (silent from the core's start at most)
		}
		if now.Sub(last) <= d {
			heard++
		}
	}
	return heard, members
}

// checkCutOff runs on the reconcile loop's ticks (judge: the loop was not
// held up itself): a leader of a group that has not heard some live
// server for half the failure timeout asks the others how many they
// reach, once per failure timeout and one question at a time, in the
// background. A leadership younger than handOffHold asks nothing: the
// lead does not bounce.
func (c *Coordinator) checkCutOff(l leadership, now time.Time, judge bool) {
	if !judge || !c.group() || c.rn == nil {
		return
	}
	ft := c.opts.Timing.FailureTimeout
	heard, members := c.hears(now, ft/2)
	if heard == members {
		return
	}
	c.mu.Lock()
	ask := c.core != nil && !c.shutting && c.ld == l && !c.handingOff &&
		now.Sub(c.askedWitness) >= ft && now.Sub(c.coreAt) >= handOffHold*ft
	if ask {
		c.askedWitness, c.handingOff = now, true
	}
	c.mu.Unlock()
	if ask {
		go c.handOffIfCut(l, heard)
	}
}

// handOffHold is how many failure timeouts a new leadership keeps the
// lead before it may hand it on.
const handOffHold = 2

// handOffIfCut asks every other coordinator how many servers it reaches
// and hands the lead to the one that reaches the most, if that is more
// than the leader heard (heard).
func (c *Coordinator) handOffIfCut(l leadership, heard int) {
	defer func() {
		c.mu.Lock()
		c.handingOff = false
		c.mu.Unlock()
	}()
	best, most := -1, heard
	type answer struct{ k, n int }
	answers := make(chan answer)
	asked := 0
	for k, cs := range c.opts.Cluster.Coordinators {
		if k == c.opts.ID {
			continue
		}
		asked++
		go func(k int, addr string) {
			ctx, cancel := context.WithTimeout(l.ctx, 2*c.opts.Timing.Dial)
			defer cancel()
			n := 0
			cc, err := c.dialPeer(ctx, addr)
			if err == nil {
				var ans wire.Frame
				ans, err = cc.roundTrip(ctx, &wire.Frame{Op: wire.OpStatus})
				if err = replyErr(ans, err); err == nil {
					n = int(ans.Seq)
				}
				cc.close()
			}
			if err != nil {
				c.log.Warn().Err(err).Int("coordinator", k).Msg("cannot ask a coordinator how many servers it reaches")
			}
			answers <- answer{k, n}
		}(k, cs.ServersAddr())
	}
	for ; asked > 0; asked-- {
		a := <-answers
		if a.n > most {
			best, most = a.k, a.n
		}
	}
	now := time.Now()
	if best < 0 || l.ctx.Err() != nil {
		return
	}
	if h, _ := c.hears(now, c.opts.Timing.FailureTimeout/2); h >= most {
		return // (heard again meanwhile)
	}
	cs := c.opts.Cluster.Coordinators[best]
	c.log.Warn().Int("heard", heard).Int("coordinator", best).Int("reaches", most).
		Msg("servers unheard: handing the lead to a coordinator that reaches more of them")
	err := c.rn.r.LeadershipTransferToServer(raft.ServerID(strconv.Itoa(best)), raft.ServerAddress(cs.RaftAddr)).Error()
	if err != nil {
		c.log.Warn().Err(err).Int("coordinator", best).Msg("leadership hand-off failed")
		return
	}
	c.met.handedOff()
}
