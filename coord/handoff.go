package coord

import (
	"context"
	"slices"
	"strconv"
	"sync"
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
// that has not heard some live server for a third of the failure timeout
// tries to reach it as the others would: it dials the server's control
// port and logs in (as it does to give it a view). Meanwhile it asks the
// others (on their servers ports, with the cluster secret) how many
// servers they reach the same way. If it cannot reach them all itself, it
// hands the lead to one that reaches more than it does. Otherwise it keeps the lead and goes on as before: a server that
// nobody reaches is down, or cut off from every coordinator, and no
// hand-off helps; one the leader reaches (a late heartbeat, a frozen or
// wedged server) is nobody else's business.

// probeWithin is how long a probe of one server may take (a dial and a
// login): a server behind a cut costs that much, and the question must
// be answered before the leader's core fails anybody (at the failure
// timeout).
func (c *Coordinator) probeWithin() time.Duration { return c.opts.Timing.FailureTimeout / 3 }

// reachable is how many live servers of the committed view this
// coordinator can give an order to now (probe). Questions share probes:
// one at a time, and one answer for every question within probeWithin of
// it (a peer holding the secret that sent questions without end would
// otherwise have every server dialled for each).
func (c *Coordinator) reachable(ctx context.Context) int {
	c.reach.mu.Lock()
	defer c.reach.mu.Unlock()
	if time.Since(c.reach.at) < c.probeWithin() {
		return c.reach.n
	}
	c.reach.n = 0
	for _, ok := range c.probe(ctx, c.liveCtlAddrs()) {
		if ok {
			c.reach.n++
		}
	}
	c.reach.at = time.Now()
	return c.reach.n
}

// liveCtlAddrs are the control addresses of the live members of the
// committed view.
func (c *Coordinator) liveCtlAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var addrs []string
	for _, m := range c.view.Servers {
		if live(m) {
			addrs = append(addrs, m.CtlAddr)
		}
	}
	return addrs
}

// reachCache is reachable's last answer.
type reachCache struct {
	mu sync.Mutex
	at time.Time
	n  int
}

// probe reports which of the control ports at addrs this coordinator
// can dial and log in to, all at once, each within probeWithin.
func (c *Coordinator) probe(ctx context.Context, addrs []string) []bool {
	ok := make([]bool, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, c.probeWithin())
			defer cancel()
			if cc, err := c.dialCtl(pctx, a); err == nil {
				cc.close()
				ok[i] = true
			}
		})
	}
	wg.Wait()
	return ok
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
// within d, the control addresses of those it did not, and how many live
// members there are.
func (c *Coordinator) hears(now time.Time, d time.Duration) (heard int, unheard []string, members int) {
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
		} else {
			unheard = append(unheard, m.CtlAddr)
		}
	}
	return heard, unheard, members
}

// checkCutOff runs on the reconcile loop's ticks (judge: the loop was not
// held up itself): a leader of a group that has not heard some live
// server for unheardAfter asks the others how many they reach, in the
// background, one question at a time: once per failure timeout, and
// again at once when a server it asked about none of falls silent (a cut
// reaches the servers' heartbeats a tick or two apart, and the first
// question, about one server, found the others reaching no more than the
// leader: the next, a failure timeout later, came after the leader's
// core had failed the second, a review). A leadership younger than
// handOffHold asks nothing.
func (c *Coordinator) checkCutOff(l leadership, now time.Time, judge bool) {
	if !judge || !c.group() || c.rn == nil {
		return
	}
	ft := c.opts.Timing.FailureTimeout
	heard, unheard, _ := c.hears(now, c.unheardAfter())
	if len(unheard) == 0 {
		return
	}
	c.mu.Lock()
	due := now.Sub(c.askedWitness) >= ft
	news := slices.ContainsFunc(unheard, func(a string) bool { return !slices.Contains(c.askedAbout, a) })
	ask := c.core != nil && !c.shutting && c.ld == l && !c.handingOff &&
		(news || due) && now.Sub(c.coreAt) >= c.handOffHold()
	if ask {
		// (Those asked about add up until the next question due: late
		// heartbeats that take turns ask once per failure timeout.)
		if due {
			c.askedAbout = nil
		}
		for _, a := range unheard {
			if !slices.Contains(c.askedAbout, a) {
				c.askedAbout = append(c.askedAbout, a)
			}
		}
		c.askedWitness, c.handingOff = now, true
	}
	c.mu.Unlock()
	if ask {
		go c.handOffIfCut(l, heard)
	}
}

// unheardAfter is how long a live server may go unheard (heartbeats come
// every fifth of the failure timeout) before the leader tries it and asks
// the others: its own probe and the others' take up to probeWithin each,
// side by side, so the hand-off comes before the leader's core fails
// the servers it does not hear (at the failure timeout), with a third of
// it left for the transfer.
func (c *Coordinator) unheardAfter() time.Duration { return c.opts.Timing.FailureTimeout / 3 }

// answerWithin is how long the answers to a question are awaited: a
// peer's probe takes probeWithin at most, and its dial and login a few
// round trips (a review: awaited a whole failure timeout, a peer down
// with its host put the decision after the core's failover again).
func (c *Coordinator) answerWithin() time.Duration {
	return c.probeWithin() + c.opts.Timing.FailureTimeout/6
}

// handOffHold is how long a new leadership keeps the lead before it may
// hand it on (the lead does not bounce faster). A server cut from the
// leader is failed over a failure timeout after the cut, and the question
// takes up to a third of it (its own probe of a server behind the cut):
// a question due at half the failure timeout into a leadership comes in
// time for a cut at the takeover itself. (It was two failure timeouts: a
// leader cut from a server as it took over failed that server instead of
// handing the lead to a coordinator that reached it.)
func (c *Coordinator) handOffHold() time.Duration { return c.opts.Timing.FailureTimeout / 2 }

// handOffIfCut tries every live server as the others do (those it did
// not hear may be behind a late heartbeat, frozen or wedged: it reaches
// them as any other coordinator would, and nobody does better; those it
// heard lately may have been cut off since) and, meanwhile, asks every
// other coordinator how many servers it reaches; it hands the lead to the
// one that reaches the most if that is more than the leader reaches — at
// once to one that reaches them all, once its own probe is done.
func (c *Coordinator) handOffIfCut(l leadership, heard int) {
	defer func() {
		c.mu.Lock()
		c.handingOff = false
		c.mu.Unlock()
	}()
	// (Both take up to probeWithin when a server is cut off: one after
	// the other, the hand-off came after the failure timeout, and so
	// after a needless failover, when the others were cut from some
	// server too.)
	addrs := c.liveCtlAddrs()
	members := len(addrs)
	start := time.Now()
	ownc := make(chan []bool, 1)
	go func() { ownc <- c.probe(l.ctx, addrs) }()
	best, most, _ := c.askOthers(l.ctx, members)
	reached := <-ownc
	// A server heard from since the question began counts as reached
	// too: a leader starved of CPU has its dials and logins time out
	// while its peers answer at once (a review), and hears the servers'
	// heartbeats meanwhile. (It replaces a last look at whom the leader
	// heard within half the failure timeout, which, once the question
	// came at a third of it, found the server just cut off heard and
	// called the hand-off off.)
	_, unheard, _ := c.hears(time.Now(), time.Since(start))
	own := members
	for i, a := range addrs {
		if !reached[i] && slices.Contains(unheard, a) {
			own--
		}
	}
	c.log.Info().Int("heard", heard).Int("reached", own).Int("of", members).Int("coordinator", best).Int("reaches", most).
		Msg("servers unheard: asked the other coordinators how many they reach")
	if best < 0 || most <= own || l.ctx.Err() != nil {
		return
	}
	c.log.Warn().Int("heard", heard).Int("reached", own).Int("coordinator", best).Int("reaches", most).
		Msg("servers unheard: handing the lead to a coordinator that reaches more of them")
	c.handOff(best)
}

// handOff transfers the lead to coordinator k and reports whether it went.
func (c *Coordinator) handOff(k int) bool {
	cs := c.opts.Cluster.Coordinators[k]
	if err := c.rn.r.LeadershipTransferToServer(raft.ServerID(strconv.Itoa(k)), raft.ServerAddress(cs.RaftAddr)).Error(); err != nil {
		c.log.Warn().Err(err).Int("coordinator", k).Msg("leadership hand-off failed")
		return false
	}
	c.met.handedOff()
	return true
}

// askOthers asks every other coordinator (but those Raft finds
// unreachable) how many live servers it reaches (reachable) and returns
// the one that reaches the most (best -1: none reaches any). The answers
// that came within answerWithin decide (a coordinator that is down or
// cut off would hold the decision for its dial timeout); one that
// reaches enough at once. The questions still out end with it.
// unanswered counts the coordinators that gave no answer (down, not
// asked, or refusing: one just restarted has no cluster secret until it
// applied the group's state).
func (c *Coordinator) askOthers(ctx context.Context, enough int) (best, most, unanswered int) {
	qctx, qcancel := context.WithCancel(ctx)
	defer qcancel()
	type answer struct {
		k, n int
		ok   bool
	}
	asked := 0
	answers := make(chan answer, len(c.opts.Cluster.Coordinators))
	for k, cs := range c.opts.Cluster.Coordinators {
		if k == c.opts.ID {
			continue
		}
		if c.rn.unreachableMember(k) {
			unanswered++ // (one Raft does not reach would hold the decision)
			continue
		}
		asked++
		go func(k int, addr string) {
			ctx, cancel := context.WithTimeout(qctx, 2*c.opts.Timing.Dial)
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
			if err != nil && qctx.Err() == nil {
				c.log.Warn().Err(err).Int("coordinator", k).Msg("cannot ask a coordinator how many servers it reaches")
			}
			answers <- answer{k, n, err == nil}
		}(k, cs.ServersAddr())
	}
	limit := time.NewTimer(c.answerWithin())
	defer limit.Stop()
	best = -1
	for ; asked > 0 && most < enough; asked-- {
		select {
		case a := <-answers:
			if !a.ok {
				unanswered++
			}
			if a.n > most {
				best, most = a.k, a.n
			}
		case <-limit.C:
			return best, most, unanswered + asked
		case <-ctx.Done():
			return best, most, unanswered + asked
		}
	}
	return best, most, unanswered + asked
}
