package coord

import (
	"context"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"ftkv/wire"
)

// A leader of the group cut off from every server (while it still
// reaches the other coordinators, so it keeps its Raft lead) hears no
// heartbeat, and no view of its reaches a server: a review saw every
// fresh client meet STALE_EPOCH on every shard for the whole cut (16 s,
// 40 s). The servers meanwhile knock at the followers (turned away, they
// go to the next coordinator in their list), and a follower that turned
// servers away lately is the witness that they live and that it reaches
// them. So a leader that has heard no server for longer than the failure
// timeout asks the others (on their servers ports, with the cluster
// secret) how many servers they turned away lately, and hands the lead
// to the one that turned away the most. With no witness it keeps the
// lead and goes on as before: every server may really be down (the
// leader respawns them), or cut off from every coordinator.

// witnessWindow is how long a follower counts a server it turned away:
// a server that cannot reach the leader tries it again, fails after the
// dial timeout and waits up to HeartbeatRetryMax before it knocks again.
func (c *Coordinator) witnessWindow() time.Duration {
	tm := c.opts.Timing
	return 2 * (tm.Dial + tm.HeartbeatRetryMax)
}

// turnedAway records, on a follower, that server id heartbeated here.
func (c *Coordinator) turnedAway(id uint32) {
	now := time.Now()
	c.mu.Lock()
	if int(id) < len(c.nodes) {
		c.nodes[id].turnedAway = now
	}
	c.mu.Unlock()
}

// witnessed is how many servers this coordinator turned away within the
// witness window and within the last deaf (how long the asking leader
// has heard no server): a server turned away before the leader last
// heard one proves nothing about now. None while it leads: it hears
// them itself.
func (c *Coordinator) witnessed(deaf time.Duration) int {
	now := time.Now()
	within := min(c.witnessWindow(), deaf)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leading {
		return 0
	}
	n := 0
	for _, nd := range c.nodes {
		if !nd.turnedAway.IsZero() && now.Sub(nd.turnedAway) < within {
			n++
		}
	}
	return n
}

// deafFor is how long this leader has heard no server (since its core
// took over, at most).
func (c *Coordinator) deafFor(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := c.coreAt
	for _, nd := range c.nodes {
		if nd.lastSeen.After(last) {
			last = nd.lastSeen
		}
	}
	return now.Sub(last)
}

// checkDeaf runs on the reconcile loop's ticks (judge: the loop was not
// held up itself): a leader of a group that has heard no server for
// longer than the failure timeout asks for a witness, once per failure
// timeout, in the background.
func (c *Coordinator) checkDeaf(l leadership, now time.Time, judge bool) {
	if !judge || !c.group() || c.rn == nil {
		return
	}
	ft := c.opts.Timing.FailureTimeout
	if c.deafFor(now) <= ft {
		return
	}
	c.mu.Lock()
	ask := c.core != nil && !c.shutting && c.ld == l && !c.handingOff && now.Sub(c.askedWitness) >= ft
	if ask {
		c.askedWitness, c.handingOff = now, true
	}
	c.mu.Unlock()
	if ask {
		go c.handOffIfDeaf(l)
	}
}

// handOffIfDeaf asks every other coordinator how many servers it turned
// away lately and hands the lead to the one with the most, if any.
func (c *Coordinator) handOffIfDeaf(l leadership) {
	defer func() {
		c.mu.Lock()
		c.handingOff = false
		c.mu.Unlock()
	}()
	deaf := c.deafFor(time.Now())
	best, most := -1, 0
	type answer struct{ k, n int }
	answers := make(chan answer)
	asked := 0
	for k, cs := range c.opts.Cluster.Coordinators {
		if k == c.opts.ID {
			continue
		}
		asked++
		go func(k int, addr string) {
			ctx, cancel := context.WithTimeout(l.ctx, c.opts.Timing.Dial)
			defer cancel()
			n := 0
			cc, err := c.dialPeer(ctx, addr)
			if err == nil {
				var ans wire.Frame
				ans, err = cc.roundTrip(ctx, &wire.Frame{Op: wire.OpStatus, Seq: uint64(deaf / time.Millisecond)})
				if err = replyErr(ans, err); err == nil {
					n = int(ans.Seq)
				}
				cc.close()
			}
			if err != nil {
				c.log.Warn().Err(err).Int("coordinator", k).Msg("deaf leader: cannot ask a coordinator whether it hears the servers")
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
	deaf = c.deafFor(time.Now())
	if best < 0 || l.ctx.Err() != nil || deaf <= c.opts.Timing.FailureTimeout {
		return
	}
	cs := c.opts.Cluster.Coordinators[best]
	c.log.Warn().Dur("deaf_for", deaf).Int("coordinator", best).Int("servers", most).
		Msg("no server heard: handing the lead to a coordinator the servers reach")
	err := c.rn.r.LeadershipTransferToServer(raft.ServerID(strconv.Itoa(best)), raft.ServerAddress(cs.RaftAddr)).Error()
	if err != nil {
		c.log.Warn().Err(err).Int("coordinator", best).Msg("leadership hand-off failed")
		return
	}
	c.met.handedOff()
}
