package coord

import (
	"context"
	"errors"
	"time"

	"ftkv/wire"
)

// publish makes nv the current view and pushes it to its live members in
// the background: the loop goes on watching for failures meanwhile, and
// the steps that need confirmation wait for the members' answers. nv must
// follow the current view directly; a view computed from an older one is
// dropped (the caller's step will be recomputed).
func (c *Coordinator) publish(nv wire.View) bool {
	if c.testHookPublish != nil {
		c.testHookPublish()
	}
	c.mu.Lock()
	if nv.Epoch != c.view.Epoch+1 || c.pending != nil {
		c.mu.Unlock()
		c.log.Warn().Uint64("epoch", nv.Epoch).Uint64("current", c.view.Epoch).Msg("view overtaken before publication; recomputing")
		return false
	}
	// nv follows the current view; its epoch carries this leader's term.
	nv.Epoch = c.nextEpochLocked()
	// Durable before visible: nobody (a client, a heartbeat answer, a
	// re-push) sees nv until the coordinators' group committed it, so a
	// later leader never gives its epoch to another view.
	c.pending = &nv
	c.mu.Unlock()
	err := c.saveState()
	c.mu.Lock()
	c.pending = nil
	if err != nil {
		c.mu.Unlock()
		return false // not durable: not published; decided again next round
	}
	c.view = nv
	c.viewEnc = wire.AppendView(nil, &nv)
	c.publishedAt = time.Now()
	c.mu.Unlock()
	go func() {
		if errs := c.pushView(context.Background(), nv); len(errs) > 0 {
			c.log.Warn().Err(errors.Join(errs...)).Uint64("epoch", nv.Epoch).Msg("view not applied everywhere; will retry")
		}
		c.wake()
	}()
	return true
}

// repush sends the current view again to a member that has not confirmed it.
func (c *Coordinator) repush(nd *node, v wire.View) {
	defer func() {
		c.mu.Lock()
		nd.repushing = false
		c.mu.Unlock()
	}()
	enc := wire.AppendView(nil, &v)
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timing.Control)
	defer cancel()
	err := replyErr(c.control(ctx, nd, &wire.Frame{Op: wire.OpSetView, Epoch: v.Epoch, Value: enc}))
	if err != nil {
		c.log.Warn().Err(err).Int("node", nd.id).Uint64("epoch", v.Epoch).Msg("server has not applied the view yet")
		time.Sleep(c.opts.Timing.Poll)
		return
	}
	c.mu.Lock()
	if v.Epoch > nd.confirmed {
		nd.confirmed = v.Epoch
	}
	c.mu.Unlock()
	c.wake()
}
