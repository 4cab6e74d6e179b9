package coord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ftkv/coord/decide"
	"ftkv/internal/hostname"
	"ftkv/wire"
)

// The failover rules live in coord/decide, a pure state machine. While
// this coordinator leads, its reconcile loop is the core's only feeder
// (besides heartbeats, stepped under c.mu by the servers port): it turns
// ticks, process exits and the outcomes of actions into events, and runs
// the actions the core returns, each in a goroutine of its own, so the
// loop never waits on a server, a host or the Raft group.

// leadership is one term's feeding of a core: the events of the actions
// started in it go to its channel, and end with it.
type leadership struct {
	ctx    context.Context
	events chan decide.Event
	term   uint64 // the Raft term it leads in
}

// send hands ev to the loop of leadership l (dropped once it ended).
func (l leadership) send(ev decide.Event) {
	select {
	case l.events <- ev:
	case <-l.ctx.Done():
	}
}

// sendEvent hands ev to the current leadership's loop, if any: process
// exits are news to whichever core is running when they happen.
func (c *Coordinator) sendEvent(ev decide.Event) {
	c.mu.Lock()
	l := c.ld
	c.mu.Unlock()
	if l.events != nil {
		l.send(ev)
	}
}

// loop feeds the core until the leadership ends.
func (c *Coordinator) loop(l leadership) {
	t := time.NewTicker(c.opts.Timing.Heartbeat / 2)
	defer t.Stop()
	var last time.Time
	for {
		var ev decide.Event
		select {
		case <-t.C:
			// The time of the round, not of the tick: a tick queued while
			// the loop was held up must not hide the stall (heartbeats
			// may be queued unread; the core then judges no silence).
			now := time.Now()
			ev = decide.Tick{Now: now, Unread: c.heartbeatsUnread(now)}
			c.checkCutOff(l, now, !last.IsZero() && now.Sub(last) <= c.opts.Timing.FailureTimeout/2)
			last = now
		case ev = <-l.events:
		case <-l.ctx.Done():
			return
		}
		c.mu.Lock()
		shutting := c.shutting
		c.mu.Unlock()
		if shutting {
			return
		}
		c.feed(l, ev)
	}
}

// feed steps the core with ev and starts the actions it returns.
func (c *Coordinator) feed(l leadership, ev decide.Event) {
	c.mu.Lock()
	if c.core == nil {
		c.mu.Unlock()
		return
	}
	acts := c.core.Step(ev)
	c.spares = c.core.Spares()
	c.mu.Unlock()
	c.execute(l, acts)
}

// execute starts acts, in order, each in a goroutine of its own; their
// outcomes come back to the loop as events. It never blocks.
func (c *Coordinator) execute(l leadership, acts []decide.Action) {
	c.mu.Lock()
	shutting := c.shutting
	c.mu.Unlock()
	if shutting || len(acts) == 0 {
		return // the cluster is stopping: nothing more is started
	}
	c.met.acted(acts)
	for _, a := range acts {
		switch a := a.(type) {
		case decide.Publish:
			go c.publish(l, a)
		case decide.Push:
			go c.push(l, a)
		case decide.Kill:
			go c.kill(a)
		case decide.Spawn:
			go c.respawn(l, a)
		case decide.AskSeed:
			go c.askSeed(l, a)
		case decide.Freeze:
			go c.freeze(l, a)
		default:
			c.log.Error().Str("action", fmt.Sprintf("%T", a)).Msg("unknown action")
		}
	}
}

// nodeInc returns member id's record if it runs incarnation inc.
func (c *Coordinator) nodeInc(id int, inc uint64) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id < 0 || id >= len(c.nodes) || c.nodes[id].inc != inc {
		return nil
	}
	return c.nodes[id]
}

// push sends a view to one incarnation.
func (c *Coordinator) push(l leadership, a decide.Push) {
	res := decide.PushResult{ID: a.ID, Inc: a.Inc, Epoch: a.View.Epoch}
	if nd := c.nodeInc(a.ID, a.Inc); nd != nil {
		enc := wire.AppendView(nil, &a.View)
		ctx, cancel := context.WithTimeout(l.ctx, c.opts.Timing.Control)
		ans, err := c.control(ctx, nd, &wire.Frame{Op: wire.OpSetView, Epoch: a.View.Epoch, Value: enc})
		cancel()
		if err = replyErr(ans, err); err == nil {
			c.viewCounts(a.ID, a.Inc, a.View.Epoch, ans.Value)
		}
		if err != nil {
			c.log.Warn().Err(err).Int("node", a.ID).Uint64("epoch", a.View.Epoch).Msg("server has not applied the view yet")
		}
		res.OK = err == nil
	}
	l.send(res)
}

// viewCounts records the key counts incarnation inc of member id
// answered view epoch's push with (wire.DecodeKeyCounts): from then on
// status shows the counts of the roles that view gave it, not its last
// heartbeat's, gathered under the view before (a black-box test read every
// key as a secondary's for 150 ms after a restart).
func (c *Coordinator) viewCounts(id int, inc, epoch uint64, answer []byte) {
	pk, sk, ok := wire.DecodeKeyCounts(answer)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id < 0 || id >= len(c.nodes) {
		return
	}
	nd := c.nodes[id]
	if nd.inc != inc || nd.hb.Incarnation != inc || nd.hb.Epoch > epoch || nd.counted > epoch {
		return // another incarnation, or a report under a newer view came first
	}
	nd.hb.PrimaryKeys, nd.hb.SecondaryKeys, nd.counted = pk, sk, epoch
}

// kill kills one incarnation (SIGKILL) so it can never come back; a
// replaced one is killed by the respawn.
func (c *Coordinator) kill(a decide.Kill) {
	c.mu.Lock()
	nd := c.nodes[a.ID]
	p := nd.proc
	if nd.procInc != a.Inc {
		p = nil
	}
	c.mu.Unlock()
	if p == nil {
		return
	}
	// A remote host may take its ssh connect timeout to answer. A local
	// child is killed through its own handle; a re-adopted one only while
	// its pid still runs this server's incarnation (pidProc.Kill).
	if err := p.Kill(); err != nil {
		c.log.Warn().Err(err).Int("node", a.ID).Uint64("inc", a.Inc).Msg("kill of the failed incarnation failed")
	}
}

// respawn starts incarnation a.Inc of member a.ID on a.Host and waits
// until it registers (its first heartbeat, seen by the core); a failed
// or hung attempt is reported, and the core backs off and tries again.
func (c *Coordinator) respawn(l leadership, a decide.Spawn) {
	c.mu.Lock()
	nd := c.nodes[a.ID]
	old := nd.proc
	if nd.procInc != a.Old {
		old = nil // the incarnation to replace never started
	}
	from := nd.host
	c.mu.Unlock()
	if old != nil {
		if err := old.Kill(); err != nil {
			// Its host cannot be reached: the incarnation is fenced (its
			// secondary was promoted, its heartbeats are refused and it
			// exits when it hears so) and must not hold up the respawn.
			c.log.Warn().Err(err).Int("node", a.ID).Int("pid", old.PID()).Msg("cannot kill the old incarnation")
		} else {
			select {
			case <-old.Done():
			case <-time.After(c.opts.Timing.KillWait):
				c.log.Warn().Int("node", a.ID).Int("pid", old.PID()).Msg("old incarnation still running after SIGKILL")
			case <-l.ctx.Done():
				return
			}
		}
	}
	if a.Host != from {
		c.log.Warn().Int("node", a.ID).Str("from", from).Str("to", a.Host).Msg("respawning on its host keeps failing; moving the server to a spare host")
	}
	limit := c.reportLimit(a.Host)
	begun := time.Now()
	ctx, cancel := context.WithTimeout(l.ctx, limit)
	defer cancel()
	err := c.spawn(ctx, nd, a.Inc, a.Host)
	if err == nil {
		err = c.waitReported(l.ctx, a, begun, limit)
	}
	if err != nil {
		if l.ctx.Err() != nil || errors.Is(err, errShuttingDown) {
			return
		}
		c.log.Error().Err(err).Int("node", a.ID).Str("host", a.Host).Uint64("inc", a.Inc).Msg("respawn failed")
		l.send(decide.SpawnFailed{ID: a.ID, Inc: a.Inc, Err: err})
		return
	}
	c.log.Info().Int("node", a.ID).Uint64("inc", a.Inc).Msg("server respawned")
}

// exitedAtStart is the error of an incarnation whose process exited
// before it reported: with its exit status where the process has one.
func exitedAtStart(p Process) error {
	if ec, ok := p.(interface{ ExitCode() int }); ok {
		if code := ec.ExitCode(); code >= 0 {
			return fmt.Errorf("the server exited during its start (exit status %d)", code)
		}
		return errors.New("the server exited during its start (killed by a signal)")
	}
	return errors.New("the server exited during its start")
}

// reportLimit is how long a server spawned on host may take to report:
// over ssh, a busy host may take a while to log in and start it.
func (c *Coordinator) reportLimit(host string) time.Duration {
	if !hostname.IsLocal(host) {
		return c.opts.Timing.RemoteReport
	}
	return c.opts.Timing.Report
}

// awaitRespawn waits for the first heartbeat of a respawn the previous
// leader started (decide.New found it), as respawn does for its own: a
// spawn that does not report in time, or exits, failed.
func (c *Coordinator) awaitRespawn(l leadership, a decide.Spawn) {
	if err := c.waitReported(l.ctx, a, time.Now(), c.reportLimit(a.Host)); err != nil {
		if l.ctx.Err() != nil {
			return
		}
		c.log.Error().Err(err).Int("node", a.ID).Uint64("inc", a.Inc).Msg("the previous leader's respawn failed")
		l.send(decide.SpawnFailed{ID: a.ID, Inc: a.Inc, Err: err})
		return
	}
	c.mu.Lock()
	if nd := c.nodes[a.ID]; c.ld == l && nd.inc == a.Inc && nd.procInc != a.Inc && nd.hb.Incarnation == a.Inc && nd.hb.PID > 0 {
		// Its pid was not committed: watched from its first report on.
		c.watchAdoptedLocked(nd, int(nd.hb.PID), a.Inc)
	}
	c.mu.Unlock()
	c.log.Info().Int("node", a.ID).Uint64("inc", a.Inc).Msg("server respawned (by the previous leader)")
}

// waitReported waits until the core has seen the first heartbeat of
// incarnation a.Inc (or anything else happened to it), from begun on:
// within limit, or up to Timing.Recover while its process runs (it may
// be rebuilding its tables from a large log; killing it would only start
// that over). An incarnation whose process exited before it reported
// (the core then counts its start as failed) is an error that says so,
// with the exit status: the respawn failed, whatever ended the wait.
func (c *Coordinator) waitReported(ctx context.Context, a decide.Spawn, begun time.Time, limit time.Duration) error {
	warned := false
	for {
		c.mu.Lock()
		var core decide.Node
		if c.core != nil {
			core = c.core.Node(a.ID)
		}
		waiting := c.core != nil && core.Inc == a.Inc && core.State == decide.Respawning
		nd := c.nodes[a.ID]
		var proc Process
		if nd.proc != nil && nd.procInc == a.Inc {
			proc = nd.proc
		}
		running, exited := proc != nil, false
		if running {
			select {
			case <-proc.Done():
				running, exited = false, true
			default:
			}
		}
		c.mu.Unlock()
		if !waiting {
			if exited && c.core != nil && core.Inc == a.Inc && core.State == decide.Failed {
				return exitedAtStart(proc)
			}
			return nil
		}
		if waited := time.Since(begun); waited > limit {
			if !running || waited > c.opts.Timing.Recover {
				return fmt.Errorf("did not report within %s", waited.Round(time.Millisecond))
			}
			if !warned {
				warned = true
				c.log.Warn().Int("node", a.ID).Uint64("inc", a.Inc).Dur("waited", waited.Round(time.Millisecond)).Dur("limit", c.opts.Timing.Recover).
					Msg("respawned server not reported yet, its process running (rebuilding its tables from a large log?): waiting on")
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.opts.Timing.Poll):
		}
	}
}

// askSeed asks the primary that re-seeds a member for the outcome.
func (c *Coordinator) askSeed(l leadership, a decide.AskSeed) {
	res := decide.SeedResult{ID: a.ID, Inc: a.Inc, Shard: a.Shard, Epoch: a.Epoch}
	if p := c.nodeInc(a.Primary, a.PrimaryInc); p == nil {
		// A respawned primary never seeded anyone.
		res.Err = fmt.Errorf("server %d no longer runs incarnation %d", a.Primary, a.PrimaryInc)
	} else {
		res.Err = replyErr(c.askOnce(l.ctx, p, c.opts.Timing.SeedAsk, &wire.Frame{Op: wire.OpSeed, Seq: uint64(a.Shard), Floor: a.Inc}))
	}
	res.OK = res.Err == nil
	if res.OK {
		c.log.Info().Int("node", a.ID).Uint64("inc", a.Inc).Int("shard", a.Shard).Int("from", a.Primary).Msg("shard re-seeded")
	} else if l.ctx.Err() == nil {
		c.log.Error().Err(res.Err).Int("node", a.ID).Int("shard", a.Shard).Int("from", a.Primary).Msg("re-seeding failed")
	}
	l.send(res)
}

// freeze freezes a shard on its current primary for its hand-back.
func (c *Coordinator) freeze(l leadership, a decide.Freeze) {
	res := decide.FreezeResult{Shard: a.Shard, Epoch: a.Epoch}
	err := errors.New("the primary was replaced")
	if p := c.nodeInc(a.Primary, a.PrimaryInc); p != nil {
		// A freeze waits (timing.Freeze) for the writes in flight.
		ctx, cancel := context.WithTimeout(l.ctx, c.opts.Timing.FreezeAsk)
		err = replyErr(c.control(ctx, p, &wire.Frame{Op: wire.OpFreeze, Seq: uint64(a.Shard)}))
		cancel()
	}
	if err != nil {
		c.log.Warn().Err(err).Int("shard", a.Shard).Msg("freeze for hand-back failed; will retry")
	}
	res.OK = err == nil
	l.send(res)
}

func cloneView(v wire.View) wire.View {
	nv := v // every scalar field (epoch, session TTL), then fresh slices
	nv.Servers = append([]wire.Member(nil), v.Servers...)
	nv.Shards = append([]wire.Placement(nil), v.Shards...)
	return nv
}

// askOnce sends one long-running order on a connection of its own, so it
// never holds up views and other orders on the shared control link.
func (c *Coordinator) askOnce(ctx context.Context, nd *node, timeout time.Duration, f *wire.Frame) (wire.Frame, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
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
