package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"ftkv/coord/decide"
	"ftkv/internal/connlimit"
	"ftkv/internal/frameio"
	"ftkv/status"
	"ftkv/wire"
)

// maxClientFrame bounds a client's frames to the coordinator: they are small.
const maxClientFrame = 64 << 10

// eachFrame decodes and answers the frames buffered on c within its
// port's limits.
func eachFrame(c gnet.Conn, fn frameio.Handler) gnet.Action { return connlimit.Decode(c, fn) }

func answer(out []byte, f *wire.Frame, st wire.Status, epoch uint64, value []byte) []byte {
	return wire.Append(out, &wire.Frame{Op: f.Op, ID: f.ID, Status: st, Epoch: epoch, Value: value})
}

// serversHandler takes heartbeats on the servers port. The first frame of
// a connection must be HELLO with the cluster secret.
type serversHandler struct {
	gnet.BuiltinEventEngine
	c *Coordinator
}

func (h *serversHandler) OnTraffic(conn gnet.Conn) gnet.Action {
	c := h.c
	st := connlimit.Of(conn) // every connection of this port was accepted by connlimit
	return eachFrame(conn, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if !st.IsAuthed() {
			return st.Hello(f, c.clusterSecret(), out)
		}
		if f.Op == wire.OpShutdown && string(f.Value) == wire.ShutdownConfirm && c.group() {
			// The leader of the group stopped the cluster (authenticated
			// by the cluster secret): this coordinator exits too, even
			// if it never learns that the stop committed (the leader is
			// gone, and one coordinator alone elects nobody), unless the
			// order is stale (stopGroupMember).
			go c.stopGroupMember(f.Epoch, "the leader's order", false)
			return answer(out, f, wire.StatusOK, 0, nil), gnet.None
		}
		if f.Op == wire.OpStatus && c.group() {
			// A leader that does not hear some servers asks how many
			// this one reaches (handoff.go): the probes take a while,
			// off the event loop.
			// (Counted in flight, and its answer under the output
			// limits: a peer asking without reading is paused.)
			id, lim := f.ID, connlimit.Begin(conn, wire.HeaderSize)
			go func() {
				defer lim.Done(wire.HeaderSize)
				n := 0
				if !c.isLeading() {
					n = c.reachable(context.Background())
				}
				_ = conn.AsyncWrite(wire.Append(nil, &wire.Frame{Op: wire.OpStatus, ID: id, Status: wire.StatusOK, Seq: uint64(n)}), connlimit.AfterWrite)
			}()
			return out, gnet.None
		}
		if f.Op != wire.OpHeartbeat {
			return answer(out, f, wire.StatusBadRequest, 0, []byte("expected HEARTBEAT")), gnet.Close
		}
		hb, err := wire.DecodeHeartbeat(f.Value)
		if err != nil {
			return answer(out, f, wire.StatusBadRequest, 0, []byte(err.Error())), gnet.Close
		}
		c.mu.Lock()
		adopting, leading := c.adopting, c.leading
		c.mu.Unlock()
		if !leading {
			// Only the leader judges heartbeats and renews leases; the
			// server goes to the leader (or tries the next coordinator).
			return answer(out, f, wire.StatusNotLeader, 0, []byte(c.leaderAddr(false))), gnet.None
		}
		if adopting {
			return answer(out, f, wire.StatusUnavailable, 0, []byte("coordinator is re-adopting its servers")), gnet.None
		}
		st := c.heartbeat(hb)
		c.mu.Lock()
		epoch := c.view.Epoch
		if st == wire.StatusOK && int(hb.ID) < len(c.nodes) {
			nd := c.nodes[hb.ID]
			nd.hbConn, nd.hbFd = conn, conn.Fd()
		}
		c.mu.Unlock()
		if st == wire.StatusUnavailable {
			return answer(out, f, wire.StatusUnavailable, epoch, []byte("the coordinator has not confirmed its leadership lately")), gnet.None
		}
		if st != wire.StatusOK {
			return answer(out, f, wire.StatusStaleEpoch, epoch, []byte("this incarnation is no longer part of the cluster")), gnet.None
		}
		var behind []byte
		if hb.Epoch < epoch {
			// The server has not applied the current view: it comes with
			// the answer too. A server whose control port the coordinator
			// cannot reach (its SETVIEW lost) applies it from here, and
			// its shards were down until the partition healed (a review).
			// (Only to an incarnation the view names: a respawned one
			// waits for the view that makes it a member.)
			c.mu.Lock()
			if c.view.Epoch == epoch && liveMember(c.view, int(hb.ID), hb.Incarnation) {
				behind = c.viewEnc
			}
			c.mu.Unlock()
		}
		return answer(out, f, wire.StatusOK, epoch, behind), gnet.None
	})
}

func (h *serversHandler) OnClose(conn gnet.Conn, _ error) gnet.Action {
	c := h.c
	c.mu.Lock()
	for _, nd := range c.nodes {
		if nd.hbConn == conn {
			nd.hbConn, nd.hbFd = nil, 0
		}
	}
	c.mu.Unlock()
	return gnet.None
}

// heartbeatsUnread lists the servers silent at now for over the failure
// timeout, and for two at most, that have bytes waiting unread on their
// heartbeat links: the event loop that reads them was held up (a busy
// CPU), not the server, whose heartbeat came. The tick does not judge
// them silent (decide.Tick). Under a load of 1 MiB writes on the
// coordinator's CPU, a failover's "no heartbeat for 5xx ms" came while
// the server's own gaps between heartbeats stayed under 400 ms. Beyond
// two failure timeouts they are judged whatever waits: a link the loop
// stopped reading for good (paused by the output limits: a server that
// reads no answers) must not keep a server from failing. (A socket is
// asked after c.mu is released: should the link close meanwhile and its
// number go to another socket, one tick at most goes unjudged.)
func (c *Coordinator) heartbeatsUnread(now time.Time) []int {
	ft := c.opts.Timing.FailureTimeout
	type link struct{ id, fd int }
	var ls []link
	c.mu.Lock()
	for _, nd := range c.nodes {
		if silent := now.Sub(nd.lastSeen); nd.hbFd > 0 && silent > ft && silent <= 2*ft {
			ls = append(ls, link{nd.id, nd.hbFd})
		}
	}
	c.mu.Unlock()
	var ids []int
	for _, l := range ls {
		if n, err := unix.IoctlGetInt(l.fd, unix.SIOCINQ); err == nil && n > 0 {
			ids = append(ids, l.id)
		}
	}
	return ids
}

// clientsHandler serves the view and the status on the client port.
type clientsHandler struct {
	gnet.BuiltinEventEngine
	c *Coordinator
}

func (h *clientsHandler) OnTraffic(conn gnet.Conn) gnet.Action {
	c := h.c
	return eachFrame(conn, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if out, a, done := c.guardClient(conn, f, out); done {
			return out, a
		}
		switch f.Op {
		case wire.OpView:
			c.mu.Lock()
			enc, epoch := c.viewEnc, c.view.Epoch
			c.mu.Unlock()
			if epoch == 0 {
				// No cluster yet (a group waiting for its leader's first
				// view): the leader may know more.
				return answer(out, f, wire.StatusNotLeader, 0, []byte(c.leaderAddr(true))), gnet.None
			}
			return answer(out, f, wire.StatusOK, epoch, enc), gnet.None
		case wire.OpShutdown:
			// `client shutdown`: from an admin user, or without users
			// from this coordinator's own host only (a stray client
			// elsewhere must not stop the cluster).
			// The order must also say what it is (a stray or garbage
			// frame on this port must never stop the cluster).
			if !c.shutdownAllowed(conn) || string(f.Value) != wire.ShutdownConfirm {
				return answer(out, f, wire.StatusBadRequest, 0, []byte("shutdown is accepted only from an admin user, or without users from the coordinator's own host, as bin/client shutdown")), gnet.None
			}
			c.mu.Lock()
			leading, shutting := c.leading, c.shutting
			c.mu.Unlock()
			if !leading {
				return answer(out, f, wire.StatusNotLeader, 0, []byte(c.leaderAddr(true))), gnet.None
			}
			if !shutting {
				go func() {
					if err := c.StopCluster(context.Background()); err != nil {
						c.log.Error().Err(err).Msg("cluster shutdown")
					}
				}()
			}
			return answer(out, f, wire.StatusOK, 0, []byte("shutting down")), gnet.None
		case wire.OpStatus:
			// The leader asks the servers for their key counts first
			// (counts.go); a follower, or a client with too many
			// requests waiting, is answered at once.
			if c.isLeading() && c.queueStatus(conn, f.ID) {
				return out, gnet.None
			}
			st := c.statusFor(conn, c.Status())
			b, _ := json.Marshal(st)
			return answer(out, f, wire.StatusOK, st.Epoch, b), gnet.None
		}
		return answer(out, f, wire.StatusBadRequest, 0, []byte(fmt.Sprintf("op %s not accepted on the coordinator's client port", f.Op))), gnet.None
	})
}

// Status reports the cluster as `status` shows it.
func (c *Coordinator) Status() *status.Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &status.Cluster{Epoch: c.view.Epoch, Servers: []status.Server{}, Term: c.term}
	c.controlPlaneLocked(st)
	now := time.Now()
	for i, nd := range c.nodes {
		ss := status.Server{
			ID: nd.id, Addr: nd.hb.Addr, PeerAddr: nd.hb.PeerAddr, CtlAddr: nd.hb.CtlAddr, Host: nd.host, Incarnation: nd.inc,
			Epoch: nd.hb.Epoch, PrimaryKeys: nd.hb.PrimaryKeys, SecondaryKeys: nd.hb.SecondaryKeys,
			Sessions: nd.hb.Sessions, SessionRecords: nd.hb.SessionRecords, RSSBytes: nd.hb.RSSBytes,
			PrimaryOf: []int{}, SecondaryOf: []int{},
			Fsync: nd.hb.Storage.Fsync, LogBytes: nd.hb.Storage.LogBytes, SnapshotBytes: nd.hb.Storage.SnapshotBytes,
			DiskError: nd.hb.Storage.Failed, MetricsAddr: nd.hb.MetricsAddr,
		}
		if ms := nd.hb.Storage.SnapshotUnixMs; ms > 0 {
			ss.LastSnapshot = time.UnixMilli(ms).UTC().Format(time.RFC3339)
		}
		switch {
		case !c.leading && i < len(c.view.Servers):
			// A follower says what was committed: its records (a
			// heartbeat, a process) may be left from a term it led.
			m := c.view.Servers[i]
			ss = status.Server{ID: nd.id, Addr: m.Addr, PeerAddr: m.PeerAddr, CtlAddr: m.CtlAddr, Host: m.Host,
				Incarnation: m.Incarnation, PID: int(m.PID), PrimaryOf: []int{}, SecondaryOf: []int{}}
		default:
			if i < len(c.view.Servers) && c.view.Servers[i].State != wire.StateDown && c.view.Servers[i].State != wire.StateDead {
				ss.Incarnation = c.view.Servers[i].Incarnation
			}
			// The pid of the incarnation shown: the process record's
			// if it is that incarnation's (a leader taking over may
			// still hold one from a term it led before), else the view's.
			switch {
			case nd.proc != nil && nd.procInc == ss.Incarnation:
				ss.PID = nd.proc.PID()
			case i < len(c.view.Servers) && c.view.Servers[i].Incarnation == ss.Incarnation:
				ss.PID = int(c.view.Servers[i].PID)
			}
		}
		if c.leading && c.core != nil {
			// The epoch it confirmed by answering a view's push may be
			// newer than its last heartbeat's (at start, after a
			// failover).
			if cn := c.core.Node(i); cn.Inc == ss.Incarnation && cn.Confirmed > ss.Epoch {
				ss.Epoch = cn.Confirmed
			}
		}
		if !nd.lastSeen.IsZero() && c.leading {
			ss.HeartbeatAge = now.Sub(nd.lastSeen).Round(time.Millisecond).String()
		}
		for s, p := range c.view.Shards {
			if int(p.Primary) == i {
				ss.PrimaryOf = append(ss.PrimaryOf, s)
			}
			if int(p.Secondary) == i {
				ss.SecondaryOf = append(ss.SecondaryOf, s)
			}
		}
		sort.Ints(ss.PrimaryOf)
		sort.Ints(ss.SecondaryOf)
		ss.Role = roleString(ss.PrimaryOf, ss.SecondaryOf)
		ss.State = c.serverState(i, nd)
		st.Servers = append(st.Servers, ss)
	}
	st.Shards = []status.Shard{}
	for s, p := range c.view.Shards {
		sh := status.Shard{Shard: s, Primary: int(p.Primary), Secondary: int(p.Secondary), State: "serving"}
		switch {
		case c.blindLocked():
			sh.State = "unknown"
		case p.Primary < 0, p.Secondary < 0 && c.silentLocked(int(p.Primary)):
			// (A silent primary with no secondary: nobody answers.)
			sh.State = "unavailable"
		case int(p.Primary) < len(st.Servers) && st.Servers[p.Primary].State == "starting":
			// Its primary runs no view yet (a restart after every
			// process was killed, say): nobody serves the shard yet.
			sh.State = "starting"
		case p.Secondary < 0 && len(c.view.Shards) > 1:
			sh.State = "degraded"
		}
		st.Shards = append(st.Shards, sh)
	}
	return st
}

// blindLocked reports whether this coordinator neither leads nor knows
// a leader (just started after every process was killed, or cut off from
// its group): the view it last committed may be long out of date (it
// showed dead servers "serving", and a script polling status until every
// server serves passed at once), so status says "unknown" (c.mu held).
func (c *Coordinator) blindLocked() bool {
	return !c.leading && (c.rn == nil || c.rn.leader() < 0)
}

// silentLocked reports whether server i, a live member of the view, has
// sent no heartbeat for longer than the failure timeout (c.mu held; on
// the leader, which hears the heartbeats).
func (c *Coordinator) silentLocked(i int) bool {
	if c.core == nil || !c.leading || i >= len(c.view.Servers) {
		return false
	}
	if st := c.view.Servers[i].State; st != wire.StateServing && st != wire.StateReseeding {
		return false
	}
	nd := c.core.Node(i)
	if nd.State != decide.Serving && nd.State != decide.Reseeding && nd.State != decide.Seeded {
		return false // failed or condemned: its heartbeats are not counted
	}
	return !nd.LastSeen.IsZero() && time.Since(nd.LastSeen) > c.opts.Timing.FailureTimeout
}

// serverState is the state `status` shows for server i.
func (c *Coordinator) serverState(i int, nd *node) string {
	v := c.view
	if i >= len(v.Servers) {
		return "starting"
	}
	m := v.Servers[i]
	switch {
	case c.blindLocked():
		return "unknown"
	case !c.leading:
		// A follower hears no heartbeats: it says what was committed.
		switch m.State {
		case wire.StateDown, wire.StateDead:
			return "down"
		case wire.StateReseeding:
			return "re-seeding"
		}
	case m.State == wire.StateDown || m.State == wire.StateDead:
		if c.core != nil {
			if st := c.core.Node(i).State; st == decide.Respawning || st == decide.Registered {
				return "starting"
			}
		}
		return "down"
	case c.silentLocked(i):
		// Kept in its roles though its heartbeats stopped: it holds
		// the only complete copy of a shard (failing it over would
		// not bring that shard back). It showed "starting".
		return "silent"
	case m.State == wire.StateReseeding:
		return "re-seeding"
	case c.core == nil || c.core.Node(i).Confirmed < v.Epoch:
		return "starting" // (or has not applied the current view yet)
	}
	n := len(v.Shards)
	if n > 0 && v.Shards[i%n].Primary < 0 {
		return "unavailable" // both copies of its own shard are gone
	}
	for _, p := range v.Shards {
		if int(p.Primary) == i && p.Secondary < 0 && n > 1 {
			return "degraded" // it leads a shard that has no copy
		}
	}
	return "serving"
}

func roleString(prim, sec []int) string {
	s := ""
	for _, p := range prim {
		s += fmt.Sprintf("primary(%d) ", p)
	}
	for _, p := range sec {
		s += fmt.Sprintf("secondary(%d) ", p)
	}
	if s == "" {
		return "none"
	}
	return s[:len(s)-1]
}

// controlPlaneLocked fills the coordinators' part of a status (c.mu held).
func (c *Coordinator) controlPlaneLocked(st *status.Cluster) {
	st.Leader, st.Answered = -1, c.opts.ID
	if !c.group() {
		st.Answered = 0
	}
	if c.rn != nil {
		st.Leader, st.Term = c.rn.leader(), c.rn.r.CurrentTerm()
	}
	role := func(k int) string {
		switch {
		case k == st.Answered && c.leading:
			return "leader"
		case k == st.Leader:
			return "leader"
		case k == st.Answered:
			return "follower"
		case c.leading && c.rn != nil && c.rn.unreachableMember(k):
			return "unreachable" // the leader's heartbeats to it fail
		}
		return "follower" // as far as this coordinator knows
	}
	if !c.group() {
		st.Coordinators = []status.Coordinator{{ID: 0, ClientAddr: c.clientAddr, ServersAddr: c.serversAddr, Role: role(0), MetricsAddr: c.metricsAddr()}}
		return
	}
	for k, cs := range c.opts.Cluster.Coordinators {
		r := role(k)
		if st.Leader < 0 {
			r = "unknown"
		}
		st.Coordinators = append(st.Coordinators, status.Coordinator{ID: k, RaftAddr: cs.RaftAddr,
			ClientAddr: cs.ClientAddr(), ServersAddr: cs.ServersAddr(), Role: r})
		if k == st.Answered {
			st.Coordinators[len(st.Coordinators)-1].MetricsAddr = c.metricsAddr()
		}
	}
}

// leaderAddr is the leader's client (clients) or servers address, "" when
// no leader is known.
func (c *Coordinator) leaderAddr(clients bool) string {
	if c.rn == nil || !c.group() {
		return ""
	}
	k := c.rn.leader()
	if k < 0 || k >= len(c.opts.Cluster.Coordinators) {
		return ""
	}
	cs := c.opts.Cluster.Coordinators[k]
	if clients {
		return cs.ClientAddr()
	}
	return cs.ServersAddr()
}
