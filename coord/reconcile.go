package coord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ftkv/internal/hostname"
	"ftkv/wire"
)

// The reconcile loop owns every change of the view. One goroutine, one
// step at a time, each step a new epoch:
//
//  1. failure: a member's process exited or it missed heartbeats for the
//     failure timeout -> its shards move to their secondaries (or become
//     unavailable if both copies are gone), its copies are dropped, it is
//     killed and respawned in the background;
//  2. re-seed: a respawned incarnation has registered -> it becomes the
//     re-seeding secondary of its home shards whose primaries are alive;
//  3. seeded: every primary confirmed the snapshot -> it is serving;
//  4. hand-back: a shard led by its home secondary whose home primary is
//     serving as its secondary -> freeze, then swap the roles back.
//
// Steps 2-4 wait until every live member has confirmed the current epoch,
// so a shard's view never moves twice before a change is confirmed. Step 1
// never waits: a failed member cannot confirm anything.

func (c *Coordinator) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// loop runs the reconcile steps while this coordinator leads (ctx).
func (c *Coordinator) loop(ctx context.Context) {
	t := time.NewTicker(c.opts.Timing.Heartbeat / 2)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.kick:
		case <-ctx.Done():
			return
		}
		c.mu.Lock()
		shutting := c.shutting
		c.mu.Unlock()
		if shutting {
			return
		}
		c.reconcile()
	}
}

func (c *Coordinator) reconcile() {
	now := time.Now()
	c.mu.Lock()
	// If this loop itself was held up (the coordinator was stopped or
	// starved), heartbeats may be queued unread: judge silence next round.
	lagged := !c.lastRound.IsZero() && now.Sub(c.lastRound) > c.opts.Timing.FailureTimeout/2
	c.lastRound = now
	v := c.view
	// 1. failures
	failed := map[int]bool{}
	silentOnes := 0
	for i, m := range v.Servers {
		if m.State != wire.StateServing && m.State != wire.StateReseeding {
			continue
		}
		nd := c.nodes[i]
		if nd.inc != m.Incarnation {
			continue
		}
		silent := now.Sub(nd.lastSeen)
		switch {
		case nd.dead:
			failed[i] = true
		case silent > c.opts.Timing.FailureTimeout && lagged:
			continue
		case silent > c.opts.Timing.FailureTimeout:
			silentOnes++
			// One silent member per round, judged against the view as it
			// will be after the failures already chosen: two silent
			// members must never be failed over together when they hold
			// both copies of a shard.
			if silentOnes > 1 || lastCopy(demote(v, failed, c.nodes), i) {
				// Silence alone never condemns the last complete copy of
				// a shard: a slow or frozen server that comes back keeps
				// its data; failing it over would lose the shard for good.
				if !nd.missed {
					nd.missed = true
					c.log.Warn().Int("node", i).Float64("silent_ms", millis(silent)).Msg("server missed its heartbeats but holds the last copy of a shard; waiting")
				}
				continue
			}
			failed[i] = true
			c.log.Warn().Int("node", i).Float64("silent_ms", millis(silent)).Msg("server missed its heartbeats")
		}
	}
	c.linkFailures(v, now, failed) // a secondary its primary cannot reach (linkhealth.go)
	if len(failed) > 0 {
		nv := demote(v, failed, c.nodes)
		// Failed from the decision on, under the lock it was taken with:
		// a heartbeat answered while the view is published must not
		// renew the lease of a member whose secondary is about to serve.
		for i := range failed {
			c.nodes[i].failed = true
		}
		c.mu.Unlock()
		if !c.publish(nv) {
			// Overtaken by another view: decide again next round. A
			// member refused a heartbeat meanwhile has left (it exits on
			// STALE_EPOCH) and is failed over then.
			c.mu.Lock()
			for i := range failed {
				if !c.nodes[i].dead {
					c.nodes[i].failed = false
				}
			}
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		for i := range failed {
			c.nodes[i].seeding = false
		}
		c.mu.Unlock()
		c.log.Warn().Interface("failed", keys(failed)).Uint64("epoch", nv.Epoch).Msg("failing over")
		for i := range failed {
			c.condemn(c.nodes[i])
		}
		c.wake()
		return
	}
	// Respawns of failed members.
	for i, m := range v.Servers {
		nd := c.nodes[i]
		if (m.State == wire.StateDown || m.State == wire.StateDead) && !nd.spawning && !now.Before(nd.nextSpawn) &&
			(nd.inc == m.Incarnation || !nd.reported || nd.dead) {
			nd.spawning = true
			go c.respawn(nd)
		}
	}
	// Steps 2-4 need every live member at the current epoch; each one
	// that has not confirmed it a while after the push gets it again
	// (every one: a member's view application may wait on another's).
	var lagging []*node
	for i, m := range v.Servers {
		if (m.State == wire.StateServing || m.State == wire.StateReseeding) && c.nodes[i].confirmed < v.Epoch {
			lagging = append(lagging, c.nodes[i])
		}
	}
	if len(lagging) > 0 {
		var late []*node
		if time.Since(c.publishedAt) > c.opts.Timing.Repush {
			for _, nd := range lagging {
				if !nd.repushing {
					nd.repushing = true
					late = append(late, nd)
				}
			}
		}
		c.mu.Unlock()
		for _, nd := range late {
			go c.repush(nd, v)
		}
		return
	}
	// 2. re-seed a respawned member.
	for i, m := range v.Servers {
		nd := c.nodes[i]
		if (m.State == wire.StateDown || m.State == wire.StateDead) && nd.inc != m.Incarnation && nd.reported && !nd.dead && !nd.failed && !nd.spawning {
			nv := addReseeding(v, i, nd)
			inc := nd.inc
			c.mu.Unlock()
			if !c.publish(nv) {
				return
			}
			c.mu.Lock()
			nd.seeding = true
			c.mu.Unlock()
			c.log.Info().Int("node", i).Uint64("inc", inc).Uint64("epoch", nv.Epoch).Msg("re-seeding respawned server")
			go c.awaitSeed(nv, i, inc)
			return
		}
	}
	// 4. hand-back.
	for s, pl := range v.Shards {
		if pl.Primary < 0 || int(pl.Primary) == s || int(pl.Secondary) != s {
			continue
		}
		if v.Servers[s].State != wire.StateServing || c.handingBack {
			continue
		}
		// In the background: a freeze waits (timing.Freeze) for writes
		// in flight, and failures must be detected meanwhile.
		c.handingBack = true
		c.mu.Unlock()
		go func(s int) {
			c.handBack(v, s)
			c.mu.Lock()
			c.handingBack = false
			c.mu.Unlock()
			c.wake()
		}(s)
		return
	}
	c.mu.Unlock()
}

// lastCopy reports whether member i leads a shard that has no serving
// secondary.
func lastCopy(v wire.View, i int) bool {
	for _, pl := range v.Shards {
		if int(pl.Primary) == i && (pl.Secondary < 0 || v.Servers[pl.Secondary].State != wire.StateServing) {
			return true
		}
	}
	return false
}

func keys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

// demote returns the view after the failure of the members in failed.
func demote(v wire.View, failed map[int]bool, nodes []*node) wire.View {
	nv := cloneView(v)
	nv.Epoch++
	for s, pl := range nv.Shards {
		switch {
		case pl.Primary >= 0 && failed[int(pl.Primary)]:
			if pl.Secondary >= 0 && !failed[int(pl.Secondary)] && nv.Servers[pl.Secondary].State == wire.StateServing {
				nv.Shards[s] = wire.Placement{Primary: pl.Secondary, Secondary: -1}
			} else {
				nv.Shards[s] = wire.Placement{Primary: -1, Secondary: -1}
			}
		case pl.Secondary >= 0 && failed[int(pl.Secondary)]:
			nv.Shards[s].Secondary = -1
		}
	}
	for i := range failed {
		if nodes[i].dead {
			nv.Servers[i].State = wire.StateDead
		} else {
			nv.Servers[i].State = wire.StateDown
		}
	}
	return nv
}

// addReseeding returns the view where the respawned member i is the
// re-seeding secondary of its home shards that still have a primary.
func addReseeding(v wire.View, i int, nd *node) wire.View {
	nv := cloneView(v)
	nv.Epoch++
	n := len(nv.Shards)
	m := &nv.Servers[i]
	m.Incarnation, m.PID, m.State = nd.inc, uint32(nd.proc.PID()), wire.StateReseeding
	m.Addr, m.PeerAddr, m.CtlAddr = nd.hb.Addr, nd.hb.PeerAddr, nd.hb.CtlAddr
	m.Host = nd.host
	if n == 1 {
		return nv
	}
	for _, s := range []int{i, (i - 1 + n) % n} {
		pl := nv.Shards[s]
		if pl.Primary >= 0 && int(pl.Primary) != i && pl.Secondary < 0 {
			nv.Shards[s].Secondary = int32(i)
		}
	}
	return nv
}

func cloneView(v wire.View) wire.View {
	nv := v // every scalar field (epoch, session TTL), then fresh slices
	nv.Servers = append([]wire.Member(nil), v.Servers...)
	nv.Shards = append([]wire.Placement(nil), v.Shards...)
	return nv
}

// condemn kills a failed incarnation (SIGKILL) so it can never come back.
func (c *Coordinator) condemn(nd *node) {
	c.mu.Lock()
	p := nd.proc
	c.mu.Unlock()
	if p != nil {
		// In the background: a remote host may take its ssh connect
		// timeout to answer, and the loop must go on.
		go func() {
			if err := p.Kill(); err != nil {
				c.log.Warn().Err(err).Int("node", nd.id).Msg("kill of the failed incarnation failed")
			}
		}()
	}
}

// spareAfter is how many respawns in a row must fail on a server's host
// before it moves to a spare host.
const spareAfter = 3

// respawn starts a new incarnation of nd and waits until it registers; a
// failed or hung attempt backs off and is retried by the loop. After
// spareAfter failures in a row the server moves to a spare host, if any.
func (c *Coordinator) respawn(nd *node) {
	defer func() {
		c.mu.Lock()
		nd.spawning = false
		c.mu.Unlock()
		c.wake()
	}()
	c.mu.Lock()
	old := nd.proc
	c.mu.Unlock()
	if old != nil {
		if err := old.Kill(); err != nil {
			// Its host cannot be reached: the incarnation is fenced (its
			// secondary was promoted, its heartbeats are refused and it
			// exits when it hears so) and must not hold up the respawn.
			c.log.Warn().Err(err).Int("node", nd.id).Int("pid", old.PID()).Msg("cannot kill the old incarnation")
		} else {
			select {
			case <-old.Done():
			case <-time.After(c.opts.Timing.KillWait):
				c.log.Warn().Int("node", nd.id).Int("pid", old.PID()).Msg("old incarnation still running after SIGKILL")
			}
		}
	}
	// Over ssh, a busy host may take a while to log in and start it.
	limit := c.opts.Timing.Report
	c.mu.Lock()
	if !hostname.IsLocal(nd.host) {
		limit = c.opts.Timing.RemoteReport
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	err := c.spawn(ctx, nd)
	if err == nil {
		err = c.waitReported(ctx, nd, limit)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if nd.backoff == 0 {
			nd.backoff = c.opts.Timing.RespawnMin
		} else if nd.backoff < c.opts.Timing.RespawnMax {
			nd.backoff *= 2
		}
		nd.nextSpawn = time.Now().Add(nd.backoff)
		nd.failed = true
		if p := nd.proc; p != nil {
			go func() { _ = p.Kill() }()
		}
		nd.failures++
		c.log.Error().Err(err).Int("node", nd.id).Str("host", nd.host).Int("attempt", nd.failures).Float64("retry_in_ms", millis(nd.backoff)).Msg("respawn failed")
		if nd.failures >= spareAfter && len(c.spares) > 0 {
			from := nd.host
			nd.host, c.spares = c.spares[0], c.spares[1:]
			nd.failures, nd.backoff, nd.nextSpawn = 0, 0, time.Now()
			c.log.Warn().Int("node", nd.id).Str("from", from).Str("to", nd.host).Msg("respawning on its host keeps failing; moving the server to a spare host")
		}
		return
	}
	nd.backoff = 0
	nd.failures = 0
	c.log.Info().Int("node", nd.id).Uint64("inc", nd.inc).Int("pid", nd.proc.PID()).Msg("server respawned")
}

func (c *Coordinator) waitReported(ctx context.Context, nd *node, limit time.Duration) error {
	for {
		c.mu.Lock()
		ok, dead := nd.reported, nd.dead
		c.mu.Unlock()
		if ok {
			return nil
		}
		if dead {
			return errors.New("exited during start-up")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("did not report within %s", limit)
		case <-time.After(c.opts.Timing.Poll):
		}
	}
}

// awaitSeed asks every primary that re-seeds member i for the outcome and
// marks i serving, or failed, in a new view.
func (c *Coordinator) awaitSeed(v wire.View, i int, inc uint64) {
	var errs []error
	for s, pl := range v.Shards {
		if int(pl.Secondary) != i || pl.Primary < 0 {
			continue
		}
		err := replyErr(c.askOnce(c.nodes[pl.Primary], c.opts.Timing.SeedAsk, &wire.Frame{Op: wire.OpSeed, Seq: uint64(s), Floor: inc}))
		if err != nil {
			errs = append(errs, fmt.Errorf("shard %d from server %d: %w", s, pl.Primary, err))
		}
	}
	c.mu.Lock()
	nd := c.nodes[i]
	cur := c.view
	if nd.inc != inc || !nd.seeding || cur.Servers[i].Incarnation != inc || cur.Servers[i].State != wire.StateReseeding {
		c.mu.Unlock()
		return // overtaken by another change
	}
	nd.seeding = false
	if len(errs) > 0 {
		// Start over from a clean state: this incarnation is failed.
		nd.failed = true
		nd.dead = true
		c.mu.Unlock()
		c.log.Error().Err(errors.Join(errs...)).Int("node", i).Msg("re-seeding failed; respawning")
		c.condemn(nd)
		c.wake()
		return
	}
	nv := cloneView(cur)
	nv.Epoch++
	nv.Servers[i].State = wire.StateServing
	c.mu.Unlock()
	if c.publish(nv) {
		c.log.Info().Int("node", i).Uint64("epoch", nv.Epoch).Msg("re-seeding complete")
	} else {
		c.mu.Lock()
		nd.seeding = true // overtaken: ask again when the loop gets here
		c.mu.Unlock()
		go c.awaitSeed(c.View(), i, inc)
	}
	c.wake()
}

// handBack returns shard s to its home server after a brief freeze.
func (c *Coordinator) handBack(v wire.View, s int) {
	cur := int(v.Shards[s].Primary)
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timing.FreezeAsk)
	defer cancel()
	start := time.Now()
	err := replyErr(c.control(ctx, c.nodes[cur], &wire.Frame{Op: wire.OpFreeze, Seq: uint64(s)}))
	if err != nil {
		c.log.Warn().Err(err).Int("shard", s).Msg("freeze for hand-back failed; will retry")
		time.Sleep(c.opts.Timing.Heartbeat)
		return
	}
	c.mu.Lock()
	if c.view.Epoch != v.Epoch {
		c.mu.Unlock()
		return // something failed meanwhile; the freeze lifts by itself
	}
	nv := cloneView(c.view)
	nv.Epoch++
	nv.Shards[s] = wire.Placement{Primary: int32(s), Secondary: int32(cur)}
	c.mu.Unlock()
	if !c.publish(nv) {
		return
	}
	c.log.Info().Int("shard", s).Int("to", s).Uint64("epoch", nv.Epoch).Float64("frozen_ms", millis(time.Since(start))).Msg("shard handed back")
	c.wake()
}

// askOnce sends one long-running order on a connection of its own, so it
// never holds up views and other orders on the shared control link.
func (c *Coordinator) askOnce(nd *node, timeout time.Duration, f *wire.Frame) (wire.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c.mu.Lock()
	addr := nd.hb.CtlAddr
	c.mu.Unlock()
	cc, err := c.dialCtl(ctx, addr)
	if err != nil {
		return wire.Frame{}, err
	}
	defer cc.close()
	return cc.roundTrip(ctx, f)
}
