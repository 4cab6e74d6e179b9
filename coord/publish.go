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
