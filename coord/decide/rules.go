package decide

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"ftkv/wire"
)

// cause is why a member is failed over: it decides whether its view state
// is Dead (no lease to wait out) or Down.
type cause uint8

const (
	byExit      cause = iota + 1 // process exited or re-seeding failed
	bySuspicion                  // silence
	byLink                       // its primary cannot replicate to it
)

// decide makes at most one change of the view (and starts the respawns
// and re-pushes due), in the order of the rules in the package doc.
func (c *Core) decide(judge bool, out []Action) []Action {
	out = c.resumeSeeds(out)
	if c.pending != nil {
		return out
	}
	v := c.view
	// 1. failures. Members known gone first: suspicion is judged against
	// the view as it will be without them, so that a silent member is
	// never failed together with the other copy of its shard.
	failed := map[int]cause{}
	reasons := map[int]string{}
	for i, m := range v.Servers {
		// (A record on a newer incarnation than a live member's: restored
		// mid-respawn by New; the one in the view is being replaced.)
		if live(m) && (c.nodes[i].Inc != m.Incarnation || c.nodes[i].State == Condemned) {
			failed[i] = byExit
			reasons[i] = "exited, replaced or its re-seeding failed"
			if c.nodes[i].inherited {
				// (An attack read "exited" for a server whose log said
				// "re-seeding complete".)
				reasons[i] = "respawned or re-seeding when this leader took over: the outcome is not known here; re-seeded afresh"
			}
		}
	}
	if judge {
		out = c.judge(failed, reasons, out)
	}
	if len(failed) > 0 {
		nv := demote(v, failed)
		p := &pending{view: nv, kind: kindFailover}
		for i := range v.Servers {
			if failed[i] != 0 {
				nd := c.nodes[i]
				// Failed from the decision on: a heartbeat answered while
				// the view is being published renews no lease.
				nd.prev, nd.State, nd.inherited = nd.State, Failed, false
				p.failed = append(p.failed, i)
				// Backed off only when its own disk failed, or when its
				// primary could not reach it before it ever served (a
				// partition between their hosts outlasts a respawn on the
				// same host, and each try held the shard's writes: a
				// review's 30 s cut saw 12 of them): a re-seeding cut by
				// load or a neighbour's failure is retried at once.
				ownDisk := nd.HB.Storage.Failed && nd.HB.Incarnation == nd.Inc
				if !nd.served && nd.Inc == v.Servers[i].Incarnation && (ownDisk || failed[i] == byLink) {
					c.failedStart(nd)
				}
			}
		}
		return c.proposeWith(p, "failover", failureCauses(reasons), out)
	}
	if judge {
		if p, detail, ok := c.dropSilent(v); ok {
			return c.proposeWith(p, "drop a silent secondary", detail, out)
		}
		if p, detail, ok := c.dropStalled(v); ok {
			return c.proposeWith(p, "drop a secondary its primary cannot reach", detail, out)
		}
	}
	// 2. respawns.
	for i, nd := range c.nodes {
		if nd.State == Failed && !c.now.Before(nd.NextSpawn) {
			nd.State, nd.served = Respawning, false
			out = append(out, Spawn{ID: i, Inc: nd.Inc + 1, Old: nd.Inc, Host: nd.Host})
			nd.Inc++
		}
	}
	// Steps 3-6 need every live member at the current epoch; each one
	// that has not confirmed it a while after publication gets it again.
	lagging := false
	for i, m := range v.Servers {
		nd := c.nodes[i]
		if !live(m) || nd.Inc != m.Incarnation || nd.Confirmed >= v.Epoch {
			continue
		}
		if lagging && c.firstLaggingOnly {
			break
		}
		lagging = true
		if c.now.Sub(c.publishedAt) > c.cfg.Repush && !c.now.Before(nd.pushAt) {
			nd.pushAt = c.now.Add(c.cfg.Repush)
			out = append(out, Push{ID: i, Inc: nd.Inc, View: cloneView(v)})
		}
	}
	if lagging {
		return out
	}
	// 3. restore a shard that lost both copies from the logs of its home
	// pair, once both are back; then 4. re-seed a respawned member.
	if nv, ok := c.restore(v); ok {
		return c.propose(nv, "restore from the log", out)
	}
	for i, nd := range c.nodes {
		if nd.State == Registered && !live(v.Servers[i]) && !c.awaitsPartner(v, i) {
			return c.propose(&pending{view: addReseeding(v, i, nd), kind: kindReseed, node: i}, "re-seed", out)
		}
	}
	// 4c. a member whose join failed is dropped as that shard's secondary
	// (and serves again if it re-seeds nothing else).
	for i, nd := range c.nodes {
		if len(nd.unjoin) == 0 || !live(v.Servers[i]) || v.Servers[i].Incarnation != nd.Inc {
			continue
		}
		nv := cloneView(v)
		nv.Epoch++
		for _, s := range nd.unjoin {
			if int(nv.Shards[s].Secondary) == i {
				nv.Shards[s].Secondary = -1
			}
		}
		if nd.State == Reseeding && len(nd.seedWait) == 0 {
			nv.Servers[i].State = wire.StateServing
		}
		return c.propose(&pending{view: nv, kind: kindUnjoin, node: i}, "drop a failed join", out)
	}
	// 4b. a shard led alone while its other home server serves (restored
	// on its partner after that one was back in the view): that one
	// re-seeds it.
	if nv, ok := c.join(v); ok {
		return c.propose(nv, "re-seed a shard's home secondary", out)
	}
	// 5. a re-seeded member serves.
	for i, nd := range c.nodes {
		if nd.State == Seeded && v.Servers[i].State == wire.StateReseeding && v.Servers[i].Incarnation == nd.Inc {
			nv := cloneView(v)
			nv.Epoch++
			nv.Servers[i].State = wire.StateServing
			return c.propose(&pending{view: nv, kind: kindSeeded, node: i}, "seeded", out)
		}
	}
	// 6. hand-back, one shard at a time; the freeze runs in the background
	// while failures are still judged.
	if h := c.hand; h != nil {
		if h.frozen || c.now.Before(h.retryAt) {
			return out
		}
		c.hand = nil
	}
	for s, pl := range v.Shards {
		if pl.Primary < 0 || int(pl.Primary) == s || int(pl.Secondary) != s {
			continue
		}
		if v.Servers[s].State != wire.StateServing || c.nodes[s].State != Serving {
			continue
		}
		c.hand = &handBack{shard: s, primary: int(pl.Primary), epoch: v.Epoch, frozen: true}
		return append(out, Freeze{Shard: s, Primary: int(pl.Primary), PrimaryInc: v.Servers[pl.Primary].Incarnation, Epoch: v.Epoch})
	}
	return out
}

// restore returns the view that brings back one unavailable shard s
// (both copies failed) once both servers of its home pair (s and s+1)
// have registered new incarnations: the one whose log reports the
// further complete copy (Heartbeat.Durable; the home server on a tie)
// leads it and re-seeds its other shard like any respawned member. A
// copy no log reports (no data directory, or a re-seeding that did not
// finish) is never used, nor one outside the record of current copies
// (it misses writes the other acknowledged alone): without one the shard
// stays unavailable.
func (c *Core) restore(v wire.View) (*pending, bool) {
	n := len(v.Shards)
	for s, pl := range v.Shards {
		if pl.Primary >= 0 {
			continue
		}
		best, bestIdx := -1, uint64(0)
		ready := true
		for _, h := range []int{s, (s + 1) % n} {
			nd := c.nodes[h]
			m := v.Servers[h]
			back := nd.State == Registered && !live(m)
			inView := live(m) && m.Incarnation == nd.Inc && (nd.State == Serving || nd.State == Reseeding || nd.State == Seeded)
			if !back && !inView {
				ready = false
				break
			}
			if idx, ok := durableIndex(nd.HB, s); ok && c.current.Has(n, s, h) && (best < 0 || idx > bestIdx) {
				best, bestIdx = h, idx
			}
		}
		if !ready || best < 0 {
			continue
		}
		if live(v.Servers[best]) {
			// It re-seeds (or serves) its other shards already.
			nv := cloneView(v)
			nv.Epoch++
			nv.Shards[s] = wire.Placement{Primary: int32(best), Secondary: -1}
			return &pending{view: nv, kind: kindRestore}, true
		}
		nv := addReseeding(v, best, c.nodes[best])
		nv.Shards[s] = wire.Placement{Primary: int32(best), Secondary: -1}
		return &pending{view: nv, kind: kindReseed, node: best}, true
	}
	return nil, false
}

// join returns the view where a live member becomes the re-seeding
// secondary of a home shard that has a primary and no secondary: the
// member is re-seeding again (so no copy of it counts as complete until it
// is seeded) and waits for that shard's re-seeding too. A restore, a
// drop of a silent secondary (dropSilent) or a failed join leave such a
// shard; addReseeding covers members not yet in the view.
func (c *Core) join(v wire.View) (*pending, bool) {
	n := len(v.Shards)
	if n == 1 {
		return nil, false
	}
	for s, pl := range v.Shards {
		if pl.Primary < 0 || pl.Secondary >= 0 {
			continue
		}
		for _, h := range []int{s, (s + 1) % n} {
			nd, m := c.nodes[h], v.Servers[h]
			if h == int(pl.Primary) || !live(m) || m.Incarnation != nd.Inc || nd.HB.Storage.Failed || c.now.Before(nd.joinAt) ||
				(nd.State != Serving && nd.State != Reseeding && nd.State != Seeded) {
				continue
			}
			nv := cloneView(v)
			nv.Epoch++
			nv.Servers[h].State = wire.StateReseeding
			nv.Shards[s].Secondary = int32(h)
			return &pending{view: nv, kind: kindJoin, node: h, shard: s}, true
		}
	}
	return nil, false
}

// awaitsPartner reports whether member i, respawned, holds a copy of a
// shard that lost both copies while the other holder is being respawned:
// its re-seeding waits, so that restore compares both logs first and the
// one that does not lead becomes the shard's re-seeding secondary.
func (c *Core) awaitsPartner(v wire.View, i int) bool {
	n := len(v.Shards)
	for _, s := range []int{i, (i - 1 + n) % n} {
		other := (s + 1) % n
		if other == i {
			other = s
		}
		if v.Shards[s].Primary < 0 && other != i && c.nodes[other].State == Respawning {
			return true
		}
	}
	return false
}

// durableIndex is the log index of the complete copy of shard that hb
// reports, if any.
func durableIndex(hb wire.Heartbeat, shard int) (uint64, bool) {
	for _, d := range hb.Durable {
		if int(d.Shard) == shard {
			return d.Index, true
		}
	}
	return 0, false
}

// judge adds to failed at most one member failed on suspicion: whose log
// reports a failure, silent for longer than the failure timeout, or the
// secondary its primary cannot replicate to for longer than LinkStall while both
// heartbeat. None ever fails the last complete copy of a shard: a slow
// or frozen server that comes back keeps its data; failing it over would
// lose the shard for good.
func (c *Core) judge(failed map[int]cause, reasons map[int]string, out []Action) []Action {
	v := c.view
	ft := c.cfg.FailureTimeout
	suspect := func(i int) bool { return failed[i] == 0 && c.active(v, i) }
	// A server whose log failed (a full disk, an I/O error) refuses every
	// write of the shards it leads and acknowledges no replication: its
	// copies move to their secondaries, and its respawn recovers the log
	// (unless it is the last copy of a shard: then it stays, refusing
	// writes, until the operator frees the disk).
	for i := range v.Servers {
		if suspect(i) && c.nodes[i].HB.Storage.Failed && c.nodes[i].HB.Incarnation == c.nodes[i].Inc && !lastCopy(demote(v, failed), i) {
			failed[i] = bySuspicion
			reasons[i] = "its log failed (disk error)"
			return out
		}
	}
	// (A member whose heartbeat waits unread was heard: Tick.Unread.)
	heard := func(i int) bool { return slices.Contains(c.unread, i) }
	silent := func(i int) bool { return suspect(i) && !heard(i) && c.now.Sub(c.nodes[i].LastSeen) > ft }
	for i := range v.Servers {
		if !silent(i) {
			continue
		}
		// (A secondary that missed two heartbeats counts as silent
		// here: two members frozen together fall silent up to a
		// heartbeat period apart.)
		quiet := func(j int) bool { return suspect(j) && !heard(j) && c.now.Sub(c.nodes[j].LastSeen) > ft/2 }
		if lastCopy(demote(v, failed), i) || promotesSilent(v, i, quiet) {
			continue
		}
		failed[i] = bySuspicion
		reasons[i] = "no heartbeat for " + c.now.Sub(c.nodes[i].LastSeen).Round(time.Millisecond).String()
		return out
	}
	// Hole 9: a primary that cannot replicate to its secondary stalls
	// the shard's writes while both renew their leases. The primary holds
	// every acknowledged write; the secondary is failed and re-seeded.
	// Only when nothing else fails this round (one change at a time: the
	// next round judges the new view), and of several stalled links the
	// longest stalled first.
	if len(failed) > 0 {
		return out
	}
	victim, stalled, of := -1, time.Duration(0), -1
	c.stalledLinks(v, suspect, false, func(shard, sec int, down time.Duration) {
		if (victim < 0 || down > stalled) && !lastCopy(v, sec) {
			victim, stalled, of = sec, down, shard
		}
	})
	if victim >= 0 {
		failed[victim] = byLink
		reasons[victim] = fmt.Sprintf("the primary of shard %d cannot replicate to it (for %s)", of, stalled.Round(time.Millisecond))
	}
	return out
}

// stalledLinks calls fn for every shard whose serving primary has
// reported for longer than LinkStall that it cannot replicate
// to the shard's secondary, both heartbeating (and suspect, as judge
// means it). The reports count if made at the current epoch, or, with
// anyEpoch, at any: a primary that cannot reach the secondary a view
// names refuses that view (its link is not up within the handshake), so
// it reports the link at the epoch before, and it is the same link (the
// report names the secondary's incarnation, and the primary counts from
// when it was given that secondary). A re-seeding secondary's link counts
// at any epoch too: the primary given it refuses the view that names it
// as long as it cannot reach it, so its report never comes at that view's
// epoch, and its writes wait for the link meanwhile (a review cut the
// link between a primary's host and its secondary's: the secondary's
// respawn landed on the same host, and each re-seeding held the shard's
// writes until the view's push timed out, 6 s of an 8 s cut).
func (c *Core) stalledLinks(v wire.View, suspect func(int) bool, anyEpoch bool, fn func(shard, sec int, down time.Duration)) {
	ft := c.cfg.FailureTimeout
	for p, nd := range c.nodes {
		if !suspect(p) || nd.State != Serving || v.Servers[p].State != wire.StateServing ||
			c.now.Sub(nd.LastSeen) > ft {
			continue
		}
		for _, l := range nd.links {
			if l.DownFor <= c.cfg.LinkStall || l.Shard < 0 || l.Shard >= len(v.Shards) {
				continue
			}
			pl := v.Shards[l.Shard]
			sec := int(pl.Secondary)
			if int(pl.Primary) != p || sec < 0 || sec == p || sec != l.Secondary || !suspect(sec) ||
				v.Servers[sec].Incarnation != l.Incarnation || c.now.Sub(c.nodes[sec].LastSeen) > ft {
				continue
			}
			if nd.linksEp != v.Epoch && !anyEpoch && v.Servers[sec].State != wire.StateReseeding {
				continue
			}
			if c.ofSilence(nd, l, c.nodes[sec]) {
				continue
			}
			down := l.DownFor
			if at, ok := c.nodes[sec].seedAt[l.Shard]; ok && nd.linksEp < at.Epoch {
				// Made before the view that gave p this secondary (again:
				// dropped, it joined back): of the link before, if p has
				// applied that view since (an e2e run: a member frozen,
				// dropped, resumed and joined again was dropped right
				// after its re-seeding on its primary's last report from
				// the freeze). If p has not (yet: it may be connecting
				// the new link), the link p counts for it is down since
				// that view at most: p counts a new secondary's silence
				// from when it is given it (a review: the tick before
				// p's answer acted on the report from the freeze).
				if nd.Confirmed >= at.Epoch {
					continue
				}
				if !at.At.IsZero() {
					if down = min(down, c.now.Sub(at.At)); down <= c.cfg.LinkStall {
						continue
					}
				}
			}
			fn(l.Shard, sec, down)
		}
	}
}

// ofSilence reports whether link report l, of p's last heartbeat, may
// tell of sec's silence rather than of a cut link: it came before sec was
// first heard here, or within half a failure timeout after (a report lags
// the link by up to two heartbeats; a new leader counts every member live
// from its takeover, and a secondary frozen through it and resumed was
// dropped on its primary's report from the freeze, although its link
// answered again at once: an e2e run), or within half a failure timeout
// after sec was heard again after a silence, when the link's last answer
// came after that silence began (less half a failure timeout). A link
// cut before is a cut: a secondary whose heartbeats come late again and
// again must not put off acting on it (a review: a gap of 0.6 failure
// timeouts, every third of its primary's reports getting through, kept
// a lasting cut from being acted on for good).
func (c *Core) ofSilence(p *Node, l Link, sec *Node) bool {
	half := c.cfg.FailureTimeout / 2
	switch {
	case sec.backAt.IsZero():
		return true
	case !p.linksAt.Before(sec.backAt.Add(half)):
		return false
	case sec.silentFrom.IsZero():
		return true // (first heard: since when it was silent is not known)
	}
	lastAnswer := p.linksAt.Add(-l.DownFor)
	return !lastAnswer.Before(sec.silentFrom.Add(-half))
}

// dropStalled returns the view where a secondary that its primary cannot
// reach, kept (not failed by judge) because it holds the last copy of
// another shard, is no longer that primary's secondary: the shard's
// writes, waiting for the link, go on alone. (A review cut the link to
// a member that had just joined: the shard took no write for the 30 s of
// the cut.) It joins again (rule 4b) after a back-off (joinFailed): each
// try of a lasting cut stalls the shard's writes for one connect attempt.
// The detail, for the log, names each secondary dropped and why.
func (c *Core) dropStalled(v wire.View) (*pending, string, bool) {
	var nv *wire.View
	var why []string
	c.stalledLinks(v, func(i int) bool { return c.active(v, i) }, true, func(shard, sec int, down time.Duration) {
		if !lastCopy(v, sec) {
			return
		}
		if nv == nil {
			cv := cloneView(v)
			cv.Epoch++
			nv = &cv
		}
		nv.Shards[shard].Secondary = -1
		why = append(why, fmt.Sprintf("server %d: the primary of shard %d cannot replicate to it (for %s)", sec, shard, down.Round(time.Millisecond)))
		c.nodes[sec].joinFailed(c.now, c.cfg.RespawnMax)
	})
	if nv == nil {
		return nil, "", false
	}
	return &pending{view: *nv, kind: kindDrop}, strings.Join(why, "; "), true
}

// promotesSilent reports whether failing member i would hand a shard it
// leads to a secondary that is silent too: that shard has no copy left
// that answers, and i is kept as its last copy (another silent member,
// whose failure moves its shards to members that answer, goes first).
func promotesSilent(v wire.View, i int, silent func(int) bool) bool {
	for _, pl := range v.Shards {
		if int(pl.Primary) == i && pl.Secondary >= 0 && int(pl.Secondary) != i && silent(int(pl.Secondary)) {
			return true
		}
	}
	return false
}

// dropSilent returns the view where a member silent for longer than the
// failure timeout, and kept because it holds the last copy of a shard, is
// no longer the secondary of the shards whose primary answers: their
// writes would wait for it. (Its copies of them are stale from then on;
// it re-seeds them once it answers again, by rule 4b.)
func (c *Core) dropSilent(v wire.View) (*pending, string, bool) {
	ft := c.cfg.FailureTimeout
	silent := func(i int) bool { return c.active(v, i) && c.now.Sub(c.nodes[i].LastSeen) > ft }
	for i := range v.Servers {
		if !silent(i) {
			continue
		}
		var nv *wire.View
		for s, pl := range v.Shards {
			if int(pl.Secondary) != i || pl.Primary < 0 || int(pl.Primary) == i || silent(int(pl.Primary)) {
				continue
			}
			if nv == nil {
				cv := cloneView(v)
				cv.Epoch++
				nv = &cv
			}
			nv.Shards[s].Secondary = -1
		}
		if nv != nil {
			return &pending{view: *nv, kind: kindDrop}, fmt.Sprintf("server %d: no heartbeat for %s",
				i, c.now.Sub(c.nodes[i].LastSeen).Round(time.Millisecond)), true
		}
	}
	return nil, "", false
}

// active reports whether member i of v is live in v as the incarnation
// the core knows, serving or re-seeding (a member judge may fail or a
// drop may act on).
func (c *Core) active(v wire.View, i int) bool {
	nd := c.nodes[i]
	return live(v.Servers[i]) && nd.Inc == v.Servers[i].Incarnation &&
		(nd.State == Serving || nd.State == Reseeding || nd.State == Seeded)
}

func live(m wire.Member) bool {
	return m.State == wire.StateServing || m.State == wire.StateReseeding
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

// demote returns the view after the failure of the members in failed: a
// shard whose primary failed moves to its serving secondary, or becomes
// unavailable; a failed secondary is dropped.
func demote(v wire.View, failed map[int]cause) wire.View {
	nv := cloneView(v)
	nv.Epoch++
	if len(failed) == 0 {
		return nv
	}
	for s, pl := range nv.Shards {
		switch {
		case pl.Primary >= 0 && failed[int(pl.Primary)] != 0:
			if pl.Secondary >= 0 && failed[int(pl.Secondary)] == 0 && nv.Servers[pl.Secondary].State == wire.StateServing {
				nv.Shards[s] = wire.Placement{Primary: pl.Secondary, Secondary: -1}
			} else {
				nv.Shards[s] = wire.Placement{Primary: -1, Secondary: -1}
			}
		case pl.Secondary >= 0 && failed[int(pl.Secondary)] != 0:
			nv.Shards[s].Secondary = -1
		}
	}
	for i, why := range failed {
		if why == byExit {
			nv.Servers[i].State = wire.StateDead
		} else {
			nv.Servers[i].State = wire.StateDown
		}
	}
	return nv
}

// addReseeding returns the view where the registered incarnation of
// member i is the re-seeding secondary of its home shards (i and its
// predecessor's) that still have a primary and no secondary.
func addReseeding(v wire.View, i int, nd *Node) wire.View {
	nv := cloneView(v)
	nv.Epoch++
	n := len(nv.Shards)
	m := &nv.Servers[i]
	m.Incarnation, m.PID, m.State = nd.Inc, nd.HB.PID, wire.StateReseeding
	m.Addr, m.PeerAddr, m.CtlAddr = nd.HB.Addr, nd.HB.PeerAddr, nd.HB.CtlAddr
	m.Host = nd.Host
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

// failureCauses is the log's account of a failover: each failed member
// and why.
func failureCauses(reasons map[int]string) string {
	ids := make([]int, 0, len(reasons))
	for i := range reasons {
		ids = append(ids, i)
	}
	sort.Ints(ids)
	parts := make([]string, len(ids))
	for k, i := range ids {
		parts[k] = fmt.Sprintf("server %d: %s", i, reasons[i])
	}
	return strings.Join(parts, "; ")
}

// resumeSeeds asks the seeding primaries of each member New found
// re-seeding for the outcome, as the publication of its re-seeding view
// does (published, kindReseed).
func (c *Core) resumeSeeds(out []Action) []Action {
	for _, nd := range c.nodes {
		if !nd.resume {
			continue
		}
		nd.resume = false
		if nd.State == Reseeding { // (else it exited meanwhile: failed over)
			// (When the view that gave its primaries nd was published
			// is not known here: their reports of it count in full.)
			out = c.askSeeds(nd, time.Time{}, out)
		}
	}
	return out
}

// askSeeds asks the primary of every shard the current view makes nd
// (re-seeding) the secondary of for the outcome; with none, nd is Seeded.
// published is when that view was published (zero: not known).
func (c *Core) askSeeds(nd *Node, published time.Time, out []Action) []Action {
	nd.seedWait = nil
	for s, pl := range c.view.Shards {
		if int(pl.Secondary) == nd.ID && pl.Primary >= 0 {
			nd.seedWait = append(nd.seedWait, s)
			out = append(out, nd.askSeed(c.view, s, published))
		}
	}
	if len(nd.seedWait) == 0 {
		nd.State = Seeded
	}
	return out
}
