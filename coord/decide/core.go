package decide

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"ftkv/wire"
)

// Core is the coordinator's decision state machine. It is not safe for
// concurrent use: the shell feeds it from one goroutine (or under a lock).
type Core struct {
	cfg    Config
	view   wire.View
	nodes  []*Node
	spares []string

	now         time.Time // the latest time an event carried
	lastTick    time.Time
	unread      []int // the current Tick's Unread (during its Step)
	publishedAt time.Time

	pending *pending
	hand    *handBack
	current Current // which copies hold every acknowledged write (nil: all)

	// firstLaggingOnly re-pushes only the first lagging member, as the
	// coordinator did before hole 8 was fixed (tests show the simulation
	// catches it).
	firstLaggingOnly bool
}

type kind uint8

const (
	kindFailover kind = iota
	kindReseed
	kindSeeded
	kindHandBack
	kindRestore
	kindJoin
	kindDrop
	kindUnjoin
)

// pending is a published view not yet reported durable.
type pending struct {
	view   wire.View
	kind   kind
	failed []int // kindFailover
	node   int   // kindReseed, kindSeeded, kindJoin, kindUnjoin
	shard  int   // kindJoin
}

type handBack struct {
	shard, primary int
	epoch          uint64
	frozen         bool      // the freeze is out
	retryAt        time.Time // after a failed freeze
}

// New returns a core that takes over the published view v at now: live
// members are Serving (silent from now: a grace of one failure timeout),
// re-seeding ones Reseeding (the first Step asks their seeding primaries
// for the outcome), down ones Failed, or Respawning when the previous
// leader respawned them (incs). incs are the
// newest incarnation each member was given (nil: the view's); hosts where
// each member runs (nil: the view's Host); spares the spare hosts left.
// No member counts as having confirmed v: whoever does not confirm it by
// heartbeat within Config.Repush gets it pushed.
func New(cfg Config, v wire.View, incs []uint64, hosts, spares []string, now time.Time) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(v.Servers) == 0 || len(v.Shards) != len(v.Servers) {
		return nil, fmt.Errorf("decide: view with %d servers and %d shards", len(v.Servers), len(v.Shards))
	}
	c := &Core{cfg: cfg, view: cloneView(v), spares: slices.Clone(spares), now: now, lastTick: now, publishedAt: now}
	for i, m := range v.Servers {
		nd := &Node{ID: i, Inc: m.Incarnation, Host: m.Host, LastSeen: now, NextSpawn: now}
		if i < len(incs) && incs[i] > nd.Inc {
			nd.Inc = incs[i]
		}
		if i < len(hosts) && hosts[i] != "" {
			nd.Host = hosts[i]
		}
		nd.HB = wire.Heartbeat{ID: uint32(i), Incarnation: m.Incarnation, PID: m.PID, Addr: m.Addr, PeerAddr: m.PeerAddr, CtlAddr: m.CtlAddr}
		switch {
		case m.State == wire.StateServing && nd.Inc == m.Incarnation:
			nd.State, nd.served = Serving, true
		case m.State == wire.StateReseeding && nd.Inc == m.Incarnation:
			// Its re-seeding goes on: the outcome is asked of its
			// seeding primaries (by incarnation: they answer for a
			// job the previous leader's view started, or the one this
			// core's push starts) at the first step. Condemned, it was
			// respawned and re-seeded afresh at every takeover during a
			// recovery (a chaos review: 9 of 9, its log said "re-seeding
			// complete").
			nd.State, nd.inherited, nd.resume = Reseeding, true, true
		case m.State == wire.StateServing || m.State == wire.StateReseeding:
			// A newer incarnation was spawned: the one in the view is
			// being replaced (failed over by the first decision).
			nd.State, nd.inherited = Failed, true
		case nd.Inc > m.Incarnation:
			// Down in the view, and respawned since by the previous
			// leader: that spawn is awaited as one of this core's (its
			// first heartbeat registers it; the shell reports
			// SpawnFailed if none comes in time, ProcessExited if it
			// exits). It was respawned again (a chaos review: the new
			// leader told it to exit during its takeover).
			nd.State, nd.inherited = Respawning, true
		default:
			nd.State = Failed
		}
		c.nodes = append(c.nodes, nd)
	}
	return c, nil
}

// SetCurrent gives the core the committed record of which copies hold
// every acknowledged write (the shell's, at the core's start); the core
// keeps it up to date with each view it publishes.
func (c *Core) SetCurrent(cur Current) { c.current = slices.Clone(cur) }

// Current returns the core's record of the current copies.
func (c *Core) Current() Current { return slices.Clone(c.current) }

// View returns the current (published) view.
func (c *Core) View() wire.View { return cloneView(c.view) }

// Node returns a copy of member id's record.
func (c *Core) Node(id int) Node {
	nd := *c.nodes[id]
	nd.links, nd.seedWait, nd.seedAt = slices.Clone(nd.links), slices.Clone(nd.seedWait), maps.Clone(nd.seedAt)
	return nd
}

// Unheard says member id has not been heard from since since (a
// takeover's order to report here went unanswered): its silence counts
// from then, not from the core's start, so that it is judged together
// with the members found gone at the start (an attack: a frozen server
// kept its grace while the dead one beside it was failed over onto it,
// and as the last copy of that shard it was then kept, its own shard
// down though its secondary lived).
func (c *Core) Unheard(id int, since time.Time) {
	if id >= 0 && id < len(c.nodes) && since.Before(c.nodes[id].LastSeen) {
		c.nodes[id].LastSeen = since
	}
}

// Answered records that incarnation inc of member id answered an order
// at at: it was alive then, as a heartbeat says, with no report. (A
// server frozen past a takeover's order to heartbeat to the new leader
// is sent the order again; when it resumes, its answer comes before its
// first heartbeat here, and it must not be judged silent in between.)
func (c *Core) Answered(id int, inc uint64, at time.Time) {
	nd := c.member(id, inc)
	if nd == nil || nd.State == Failed || nd.State == Condemned {
		return
	}
	if at.After(nd.LastSeen) {
		nd.LastSeen = at
	}
}

// Spares returns the spare hosts not yet taken.
func (c *Core) Spares() []string { return slices.Clone(c.spares) }

// Pending returns the view being published, if any.
func (c *Core) Pending() (wire.View, bool) {
	if c.pending == nil {
		return wire.View{}, false
	}
	return cloneView(c.pending.view), true
}

// Lease reports whether a heartbeat of incarnation inc of member id may
// renew its lease: never for an old incarnation, nor for one declared
// failed or condemned, from the moment of the decision (before its view
// is published).
func (c *Core) Lease(id int, inc uint64) bool {
	if id < 0 || id >= len(c.nodes) {
		return false
	}
	nd := c.nodes[id]
	return inc == nd.Inc && nd.State != Failed && nd.State != Condemned
}

// Step applies one event and returns the actions to carry out, in order.
func (c *Core) Step(ev Event) []Action {
	var out []Action
	judge := false
	switch e := ev.(type) {
	case Tick:
		judge = c.lastTick.IsZero() || e.Now.Sub(c.lastTick) <= c.cfg.FailureTimeout/2
		c.unread = e.Unread
		defer func() { c.unread = nil }()
		c.lastTick = e.Now
		c.advance(e.Now)
	case Heartbeat:
		c.advance(e.Now)
		c.heartbeat(e)
	case ProcessExited:
		if nd := c.member(e.ID, e.Inc); nd != nil && nd.State == Respawning {
			// Exited during start-up: the spawn failed (a SpawnFailed
			// the shell sends too is then ignored).
			out = c.spawnFailed(SpawnFailed{ID: e.ID, Inc: e.Inc}, out)
			break
		}
		c.exited(e)
	case SpawnFailed:
		out = c.spawnFailed(e, out)
	case Published:
		out = c.published(e, out)
	case PublishFailed:
		c.publishFailed()
		return nil // decided again at the next tick
	case PushResult:
		c.pushResult(e)
	case SeedResult:
		out = c.seedResult(e, out)
	case FreezeResult:
		out = c.freezeResult(e, out)
		if c.pending != nil {
			return out
		}
	default:
		panic(fmt.Sprintf("decide: unknown event %T", ev))
	}
	return c.decide(judge, out)
}

func (c *Core) advance(t time.Time) {
	if t.After(c.now) {
		c.now = t
	}
}

func (c *Core) member(id int, inc uint64) *Node {
	if id < 0 || id >= len(c.nodes) || c.nodes[id].Inc != inc {
		return nil
	}
	return c.nodes[id]
}

func (c *Core) heartbeat(e Heartbeat) {
	nd := c.member(int(e.HB.ID), e.HB.Incarnation)
	if nd == nil || nd.State == Failed || nd.State == Condemned {
		return // refused: an old or condemned incarnation
	}
	if nd.State == Respawning {
		// (The back-off is reset once this incarnation serves.)
		nd.State = Registered
		nd.Confirmed = 0
	}
	nd.HB = e.HB
	switch {
	case nd.backAt.IsZero():
		nd.backAt = e.Now
	case e.Now.Sub(nd.LastSeen) > c.cfg.FailureTimeout/2:
		nd.backAt, nd.silentFrom = e.Now, nd.LastSeen
	}
	if e.Now.After(nd.LastSeen) {
		nd.LastSeen = e.Now
	}
	if e.HB.Epoch > nd.Confirmed && e.HB.Epoch <= c.view.Epoch && nd.State.inView() {
		nd.Confirmed = e.HB.Epoch
	}
	nd.links, nd.linksEp, nd.linksAt = nil, e.HB.Epoch, e.Now
	for _, l := range e.Links {
		if l.DownFor > 0 {
			nd.links = append(nd.links, l)
		}
	}
}

// state is the state an event about nd applies to: its state before the
// failover being published, if it is one of the failed (should that view
// not be made durable, the member is back where it was, and must not have
// lost an exit or a re-seed outcome meanwhile), else its state.
func (c *Core) state(nd *Node) *NodeState {
	if p := c.pending; p != nil && p.kind == kindFailover && nd.State == Failed && slices.Contains(p.failed, nd.ID) {
		return &nd.prev
	}
	return &nd.State
}

func (c *Core) exited(e ProcessExited) {
	nd := c.member(e.ID, e.Inc)
	if nd == nil {
		return
	}
	nd.inherited = false // (it exited: the failover says so)
	switch st := c.state(nd); *st {
	case Serving, Reseeding, Seeded:
		*st = Condemned
	case Registered:
		*st = Failed
		c.failedStart(nd)
	}
	// Failed, Condemned: known already.
}

func (c *Core) spawnFailed(e SpawnFailed, out []Action) []Action {
	nd := c.member(e.ID, e.Inc)
	if nd == nil || nd.State != Respawning {
		return out
	}
	nd.State = Failed
	c.failedStart(nd)
	return append(out, Kill{ID: e.ID, Inc: e.Inc})
}

// failedStart backs off the next respawn of nd, whose incarnation failed
// before it ever served (its spawn failed, it exited or its re-seeding
// failed): doubling from Config.RespawnMin to RespawnMax, and after
// Config.SpareAfter such failures in a row on a spare host, at once. A
// host whose disk is full so no longer respawns in a tight loop.
func (c *Core) failedStart(nd *Node) {
	if nd.Backoff == 0 {
		nd.Backoff = c.cfg.RespawnMin
	} else if nd.Backoff < c.cfg.RespawnMax {
		nd.Backoff = min(2*nd.Backoff, c.cfg.RespawnMax)
	}
	nd.NextSpawn = c.now.Add(nd.Backoff)
	nd.Failures++
	if nd.Failures >= c.cfg.SpareAfter && len(c.spares) > 0 {
		nd.Host, c.spares = c.spares[0], c.spares[1:]
		nd.Failures, nd.Backoff, nd.NextSpawn = 0, 0, c.now
	}
}

func (c *Core) published(e Published, out []Action) []Action {
	p := c.pending
	if p == nil {
		return out
	}
	if e.Epoch == 0 {
		e.Epoch = p.view.Epoch
	}
	if e.Epoch <= c.view.Epoch {
		return out // not a newer epoch: not a report of this view
	}
	c.pending = nil
	c.view = p.view
	c.view.Epoch = e.Epoch
	c.publishedAt = c.now
	c.current = c.current.Next(c.view)
	if len(e.Current) == len(c.view.Shards) {
		c.current = slices.Clone(e.Current)
	}
	switch p.kind {
	case kindFailover:
		for _, i := range p.failed {
			c.nodes[i].seedWait = nil
			out = append(out, Kill{ID: i, Inc: c.view.Servers[i].Incarnation})
		}
	case kindReseed:
		nd := c.nodes[p.node]
		if nd.State != Registered {
			// It exited while the view was being published: it is in the
			// view now, gone; failed over by the decision below.
			nd.State = Condemned
			break
		}
		nd.State = Reseeding
		out = c.askSeeds(nd, c.now, out)
	case kindJoin:
		nd := c.nodes[p.node]
		if nd.State != Serving && nd.State != Reseeding && nd.State != Seeded {
			break // it exited meanwhile: failed over by the decision below
		}
		if nd.State != Reseeding {
			nd.seedWait = nil
		}
		nd.State = Reseeding
		// Once per shard: a member dropped from the shard (a silent
		// secondary) while its re-seeding was awaited, and joined again,
		// awaits the outcome of this join only (askSeed moves seedAt to
		// this view, so the first join's outcome is ignored). Listed
		// twice, the one success never emptied seedWait: it stayed
		// re-seeding for good (an e2e run).
		if !slices.Contains(nd.seedWait, p.shard) {
			nd.seedWait = append(nd.seedWait, p.shard)
		}
		out = append(out, nd.askSeed(c.view, p.shard, c.now))
	case kindUnjoin:
		nd := c.nodes[p.node]
		nd.unjoin = nil
		if nd.State == Reseeding && len(nd.seedWait) == 0 && c.view.Servers[p.node].State == wire.StateServing {
			nd.State = Serving
		}
	case kindSeeded:
		if nd := c.nodes[p.node]; nd.State == Seeded {
			nd.State = Serving
			nd.served = true
			nd.Backoff, nd.Failures = 0, 0
		} // else it exited meanwhile: Condemned, failed over below
	case kindHandBack:
		c.hand = nil
	}
	// Every live member gets the new view; none has confirmed it yet.
	for i, m := range c.view.Servers {
		if m.State != wire.StateServing && m.State != wire.StateReseeding {
			continue
		}
		nd := c.nodes[i]
		if nd.Inc == m.Incarnation && nd.State.inView() && nd.State != Condemned {
			nd.pushAt = c.now.Add(c.cfg.Repush)
			out = append(out, Push{ID: i, Inc: nd.Inc, View: cloneView(c.view)})
		}
	}
	return out
}

func (c *Core) publishFailed() {
	p := c.pending
	if p == nil {
		return
	}
	c.pending = nil
	switch p.kind {
	case kindFailover:
		for _, i := range p.failed {
			c.nodes[i].State = c.nodes[i].prev
		}
	case kindHandBack:
		c.hand = nil // the freeze lifts by itself
	}
}

func (c *Core) pushResult(e PushResult) {
	nd := c.member(e.ID, e.Inc)
	if nd == nil || !nd.State.inView() {
		return
	}
	if !e.OK {
		nd.pushAt = c.now.Add(c.cfg.PushRetry)
		return
	}
	if e.Epoch > nd.Confirmed && e.Epoch <= c.view.Epoch {
		nd.Confirmed = e.Epoch
	}
}

func (c *Core) seedResult(e SeedResult, out []Action) []Action {
	nd := c.member(e.ID, e.Inc)
	if nd == nil {
		return out
	}
	st := c.state(nd)
	k := slices.Index(nd.seedWait, e.Shard)
	if *st != Reseeding || k < 0 || (e.Epoch != 0 && e.Epoch != nd.seedAt[e.Shard].Epoch) {
		// (An outcome of an earlier re-seeding of that shard, a join
		// dropped and tried again: a late failure must not end this one.)
		return out
	}
	if !e.OK && nd.served {
		// A member that served, made to re-seed a shard (rule 4b): its
		// other copies and the shards it leads are whole. It is only
		// dropped as that shard's secondary (rule 4c), and joins again
		// after a back-off.
		nd.seedWait = slices.Delete(nd.seedWait, k, k+1)
		nd.unjoin = append(nd.unjoin, e.Shard)
		nd.joinFailed(c.now, c.cfg.RespawnMax)
		return out
	}
	nd.inherited = false // (the outcome is known here now)
	if !e.OK {
		// Start over from a clean state: failed over, killed, respawned.
		*st, nd.seedWait = Condemned, nil
		return append(out, Kill{ID: e.ID, Inc: e.Inc})
	}
	nd.seedWait = slices.Delete(nd.seedWait, k, k+1)
	if nd.served {
		nd.joinFail = 0 // a join that finished
	}
	if len(nd.seedWait) == 0 {
		*st = Seeded
	}
	return out
}

func (c *Core) freezeResult(e FreezeResult, out []Action) []Action {
	h := c.hand
	if h == nil || !h.frozen || h.shard != e.Shard || h.epoch != e.Epoch {
		return out
	}
	if !e.OK {
		h.frozen, h.retryAt = false, c.now.Add(c.cfg.FreezeRetry)
		return out
	}
	if c.pending != nil || c.view.Epoch != h.epoch {
		c.hand = nil // something changed meanwhile; the freeze lifts by itself
		return out
	}
	nv := cloneView(c.view)
	nv.Epoch++
	// The former primary stays on as the secondary, unless its log failed:
	// it refuses every replication link, so the home server could never
	// apply a view naming it (and every decision after would wait on that
	// view). The shard is led alone until a healthy secondary joins.
	sec := int32(h.primary)
	if nd := c.nodes[h.primary]; nd.HB.Storage.Failed && nd.HB.Incarnation == nd.Inc {
		sec = -1
	}
	nv.Shards[h.shard] = wire.Placement{Primary: int32(h.shard), Secondary: sec}
	return c.propose(&pending{view: nv, kind: kindHandBack}, "hand-back", out)
}

func (c *Core) propose(p *pending, why string, out []Action) []Action {
	return c.proposeWith(p, why, "", out)
}

// proposeWith is propose with the detail of why, for the log.
func (c *Core) proposeWith(p *pending, why, detail string, out []Action) []Action {
	c.pending = p
	return append(out, Publish{View: cloneView(p.view), Why: why, Detail: detail})
}

func cloneView(v wire.View) wire.View {
	nv := v
	nv.Servers = slices.Clone(v.Servers)
	nv.Shards = slices.Clone(v.Shards)
	return nv
}
