package coord

import (
	"slices"

	"ftkv/coord/decide"
	"ftkv/wire"
)

// publish runs the core's Publish: it stamps the view with an epoch that
// carries this leader's term, commits it to the coordinators' group and
// only then makes it visible (clients, heartbeat answers, pushes), and
// reports the outcome to the core, which then pushes it to the members.
func (c *Coordinator) publish(l leadership, a decide.Publish) {
	if c.testHookPublish != nil {
		c.testHookPublish()
	}
	old := c.View()
	nv, err := c.commitView(a.View)
	if err != nil {
		l.send(decide.PublishFailed{Err: err})
		return
	}
	c.met.published(a.Why)
	ev := c.log.Info()
	if a.Why == "failover" {
		ev = c.log.Warn()
	}
	ev = ev.Str("why", a.Why).Uint64("epoch", nv.Epoch)
	if a.Detail != "" {
		ev = ev.Str("cause", a.Detail)
	}
	var failed []int
	for i, m := range nv.Servers {
		if (m.State == wire.StateDown || m.State == wire.StateDead) && i < len(c.nodes) {
			failed = append(failed, i)
		}
	}
	ev.Ints("down", failed).Msg("view published")
	c.mu.Lock()
	cur := slices.Clone(c.current) // committed with nv
	c.mu.Unlock()
	c.logAvailability(old, nv, cur)
	l.send(decide.Published{Epoch: nv.Epoch, Current: cur})
}

// commitView makes nv the current view: its epoch is raised to carry
// this leader's term, and it is visible only once the group committed it,
// so a later leader never gives its epoch to another view (hole 5). A
// coordinator that does not lead cannot commit, and so never acts.
func (c *Coordinator) commitView(nv wire.View) (wire.View, error) {
	nv = cloneView(nv)
	c.mu.Lock()
	nv.Epoch = max(nv.Epoch, c.nextEpochLocked())
	c.stamped = max(c.stamped, nv.Epoch)
	c.pending = &nv
	c.mu.Unlock()
	err := c.saveState()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = nil
	if err != nil {
		return nv, err
	}
	c.view = nv
	c.viewEnc = wire.AppendView(nil, &nv)
	return nv, nil
}

// logAvailability logs each shard that nv, committed with the record of
// current copies cur, leaves without a server (both copies down) or
// serves again after old had none: an operator who sees "unavailable"
// finds why, and which servers it waits for.
func (c *Coordinator) logAvailability(old, nv wire.View, cur decide.Current) {
	if len(old.Shards) != len(nv.Shards) {
		return
	}
	n := len(nv.Shards)
	for s, p := range nv.Shards {
		was := old.Shards[s].Primary >= 0
		switch {
		case was && p.Primary < 0:
			var waits []int
			for _, h := range []int{s, (s + 1) % n} {
				if cur.Has(n, s, h) && !slices.Contains(waits, h) {
					waits = append(waits, h)
				}
			}
			c.log.Error().Int("shard", s).Uint64("epoch", nv.Epoch).Ints("waits_for", waits).
				Msg("shard unavailable: both its copies are down; it is served again once a server whose copy holds every acknowledged write (waits_for) is back, never from another copy")
		case !was && p.Primary >= 0:
			c.log.Warn().Int("shard", s).Uint64("epoch", nv.Epoch).Int32("primary", p.Primary).Msg("shard served again")
		}
	}
}
