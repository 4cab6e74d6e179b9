package coord

import (
	"time"

	"ftkv/wire"
)

// Link health. A primary that cannot reach its secondary commits nothing
// (a write waits for the secondary's acknowledgement) while both still
// heartbeat: silence never condemns either, so the shard's writes would
// stall for good. Each server's heartbeat lists the shards it leads whose
// secondary has not answered for a while (wire.LinkHealth). The primary
// holds the only copy known to be complete and keeps serving; its
// secondary, once its primary has reported it unreachable for longer than
// the failure timeout, is failed like a silent member: dropped from the
// shard (the primary then commits alone), its own shards moved to their
// secondaries, killed, respawned and re-seeded through the usual path.

// linkReport is what member (an index into the view) last reported of
// the links of the shards it leads.
type linkReport struct {
	member int
	links  []wire.LinkHealth
}

// unreachableSecondary decides, from the view v, the failures already
// chosen this round and the members' link reports, which secondary to
// fail because its primary cannot replicate to it for longer than timeout.
// It returns at most one member, never while other failures are chosen
// (one change at a time; the next round judges the new view), and only if:
//   - the reporter leads the shard in v, serves and is not failing;
//   - the shard's secondary in v is the incarnation the report names
//     (a report about a former secondary condemns nobody), serving or
//     re-seeding, and not failing already;
//   - failing the secondary does not lose the last complete copy of a
//     shard it leads.
//
// Of several candidates the longest stalled goes first. It is a pure
// function: no clock, no I/O.
func unreachableSecondary(v wire.View, failed map[int]bool, reports []linkReport, timeout time.Duration) (victim, shard int, stalled time.Duration, ok bool) {
	if len(failed) > 0 {
		return 0, 0, 0, false
	}
	for _, r := range reports {
		if r.member < 0 || r.member >= len(v.Servers) || v.Servers[r.member].State != wire.StateServing {
			continue
		}
		for _, l := range r.links {
			s := int(l.Shard)
			if l.Stalled <= timeout || s >= len(v.Shards) || int(v.Shards[s].Primary) != r.member {
				continue
			}
			j := int(v.Shards[s].Secondary)
			if j < 0 || j == r.member {
				continue
			}
			m := v.Servers[j]
			if m.ID != l.Secondary || m.Incarnation != l.Incarnation ||
				(m.State != wire.StateServing && m.State != wire.StateReseeding) {
				continue
			}
			if ok && l.Stalled <= stalled {
				continue
			}
			if lastCopy(demote(v, failed, placeholderNodes(len(v.Servers))), j) {
				continue
			}
			victim, shard, stalled, ok = j, s, l.Stalled, true
		}
	}
	return victim, shard, stalled, ok
}

// placeholderNodes stands for the coordinator's records where only the
// shape of a demoted view matters (which members are down, not whether
// their processes are known dead).
func placeholderNodes(n int) []*node {
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = &node{id: i}
	}
	return nodes
}

// linkFailures adds to failed the secondary unreachableSecondary picks
// from the latest heartbeats of the members the coordinator still counts
// (current incarnation, not failed, heard within the failure timeout);
// called by the reconcile loop with c.mu held.
func (c *Coordinator) linkFailures(v wire.View, now time.Time, failed map[int]bool) {
	timeout := c.opts.Timing.FailureTimeout
	var reports []linkReport
	for i, m := range v.Servers {
		if i >= len(c.nodes) {
			break
		}
		nd := c.nodes[i]
		if len(nd.hb.Links) == 0 || nd.inc != m.Incarnation || nd.hb.Incarnation != nd.inc ||
			nd.failed || nd.dead || now.Sub(nd.lastSeen) > timeout {
			continue
		}
		reports = append(reports, linkReport{member: i, links: nd.hb.Links})
	}
	j, s, stalled, ok := unreachableSecondary(v, failed, reports, timeout)
	if !ok {
		return
	}
	failed[j] = true
	c.log.Warn().Int("node", j).Int("shard", s).Int("primary", int(v.Shards[s].Primary)).
		Float64("stalled_ms", millis(stalled)).Msg("primary cannot replicate to its secondary; failing the secondary")
}
