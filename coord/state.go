package coord

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"ftkv/coord/decide"
	"ftkv/internal/hostname"
	"ftkv/wire"
)

// saveState commits the cluster state to the coordinators' group (Raft):
// the view being published if there is one (it becomes visible only once
// it is committed), else the current one. It fails on a coordinator that
// does not lead: a deposed leader can never make a decision durable, and
// so never acts on one.
func (c *Coordinator) saveState() error {
	if c.testHookSave != nil {
		c.testHookSave()
	}
	c.saveMu.Lock() // one state at a time, in order
	defer c.saveMu.Unlock()
	if c.final {
		return errShuttingDown // the orderly stop stays the last state (saveStop)
	}
	c.mu.Lock()
	st := c.stateLocked()
	v, before := c.view, c.current
	if c.pending != nil {
		v = *c.pending
	}
	c.mu.Unlock()
	err := c.store.Save(st)
	if err != nil {
		c.log.Error().Err(err).Msg("cannot commit the coordinator state")
		return err
	}
	c.mu.Lock()
	c.current = st.Current
	if v.Epoch != 0 && v.Epoch != c.saved.epoch {
		// Its first commit. No server has it yet (only the leader hands
		// views out, once committed): a primary seen dead by now never
		// applied it, and acknowledged no write under it.
		c.saved = savedRecord{epoch: v.Epoch, before: before, dead: c.deadPrimariesLocked(v)}
	}
	c.mu.Unlock()
	return nil
}

// savedRecord is what the first commit of the view with epoch knew: the
// record of current copies before it, and the shards whose primary in
// it was already dead.
type savedRecord struct {
	epoch  uint64
	before decide.Current
	dead   []int
}

// deadLocked reports whether incarnation inc of nd is known dead (c.mu
// held): its exit was seen, or, for a process on this host, it is gone
// or a zombie now though its exit was not handled yet (two servers killed
// together: the second one's wait may run a few milliseconds late, after
// the first one's failover view was committed).
func (c *Coordinator) deadLocked(nd *node, inc uint64) bool {
	if nd.exited >= inc {
		return true
	}
	if nd.proc == nil || nd.procInc != inc {
		return false
	}
	select {
	case <-nd.proc.Done():
		return true
	default:
	}
	switch nd.proc.(type) {
	case *localProc, *pidProc:
		pid := nd.proc.PID()
		return pid > 0 && (zombie(pid) || errors.Is(syscall.Kill(pid, 0), syscall.ESRCH))
	}
	return false
}

// deadPrimariesLocked lists the shards of v whose primary's incarnation
// in v was seen dead (c.mu held).
func (c *Coordinator) deadPrimariesLocked(v wire.View) []int {
	var dead []int
	for s, p := range v.Shards {
		if p.Primary >= 0 && int(p.Primary) < len(c.nodes) && int(p.Primary) < len(v.Servers) &&
			c.deadLocked(c.nodes[p.Primary], v.Servers[p.Primary].Incarnation) {
			dead = append(dead, s)
		}
	}
	return dead
}

// stateLocked is the cluster state to commit (c.mu held).
func (c *Coordinator) stateLocked() clusterState {
	v := c.view
	if c.pending != nil {
		v = *c.pending
	}
	st := clusterState{Secret: c.secret, Config: c.opts.Cluster.Path, Spares: append([]string{}, c.spares...), Current: c.current, Home: c.home,
		NoLogs: c.noLogs && c.storage().ServerDir(0) == ""}
	if v.Epoch != 0 {
		st.View = wire.AppendView(nil, &v)
		st.Current = c.nextCurrentLocked(v)
	}
	for _, nd := range c.nodes {
		sn := savedNode{ID: nd.id, Inc: nd.inc, Host: nd.host}
		if nd.proc != nil && nd.procInc == nd.inc {
			// Only the current incarnation's pid: while a respawn is
			// committed, proc is still the previous incarnation (a later
			// leader would watch the wrong process).
			sn.PID = nd.proc.PID()
		}
		st.Nodes = append(st.Nodes, sn)
	}
	return st
}

// nextCurrentLocked is the record of current copies once v is committed
// (c.mu held). While the first view of a start is applied, a secondary
// is current only if it was and its log is as far on as the primary's:
// one behind is re-seeded while the view is applied.
func (c *Coordinator) nextCurrentLocked(v wire.View) decide.Current {
	base := c.current
	if sv := c.saved; sv.epoch == c.view.Epoch && sv.epoch != v.Epoch && len(sv.dead) > 0 && len(sv.before) == len(base) {
		// The current view was committed with a shard's primary dead
		// (two servers died together, the view failed the first over
		// to the second): nothing was acknowledged under it, so the
		// copies current before it still hold every acknowledged write.
		// A view that leaves the shard without a primary keeps them.
		base = slices.Clone(base)
		for _, s := range sv.dead {
			base[s] |= sv.before[s]
		}
	}
	next := base.Next(v)
	if c.firstDurable == nil {
		return next
	}
	// A start's first view: a shard it leaves unavailable keeps only the
	// copies it waits for (after the widening, which a restart's
	// re-adopted view, its servers all dead, applies too).
	next = narrowCurrent(next, v.Shards, c.narrow)
	for s, p := range v.Shards {
		if p.Primary < 0 || p.Secondary < 0 {
			continue
		}
		pi, pok := c.firstDurable[p.Primary][s]
		qi, qok := c.firstDurable[p.Secondary][s]
		if !pok || !qok || pi != qi || !c.current.Has(c.n, s, int(p.Secondary)) {
			next[s] &^= decide.Bit(c.n, s, int(p.Secondary))
		}
	}
	return next
}

// savedView decodes the view of a committed state; ok is false when it
// has none (a cluster not started yet, or stopped in order).
func (c *Coordinator) savedView(st clusterState) (v wire.View, ok bool, err error) {
	if n := len(st.Nodes); n > 0 && n != c.n {
		// Stopped in order too: the servers' data directories hold the
		// shards of n servers, and the key->shard map depends on n.
		return v, false, fmt.Errorf("%w: the cluster in this directory was made with %d servers, %s announces %d; changing the number of servers is not supported (restore the config, or start a new cluster with a new -d directory and data_dir)",
			ErrConfigMismatch, n, c.opts.Cluster.Path, c.n)
	}
	if len(st.View) == 0 || st.Stopped {
		return v, false, nil
	}
	v, err = wire.DecodeView(st.View)
	if err != nil {
		return v, false, fmt.Errorf("committed coordinator state: %w", err)
	}
	if len(v.Servers) != c.n || len(st.Nodes) != c.n {
		return v, false, fmt.Errorf("%w: the committed cluster has %d servers, %s has %d (restore the config, or start afresh with a new -d directory)",
			ErrConfigMismatch, len(v.Servers), c.opts.Cluster.Path, c.n)
	}
	return v, true, nil
}

// adopt takes over the servers of a previous coordinator: it redirects
// their heartbeats to this one and watches their pids (a local one only
// while it still runs this server's incarnation: hole 6). The core that
// takes the cluster over next (startCore) fails over whoever does not
// heartbeat, and counts no server as having applied the view until its
// heartbeat or a push says so (hole 4).
// It returns how many servers answered, of how many live members, and
// how many of the others refused the connection (their host answered:
// no server listens there).
func (c *Coordinator) adopt(l leadership, st clusterState, v wire.View) (answered, live, refused int) {
	// First the records of every node, under the lock (heartbeats are
	// already arriving), then the network round trips.
	c.mu.Lock()
	if c.ld != l {
		// Deposed since the takeover began: a follower watches nothing
		// (takeOver sees the leadership's context ended).
		c.mu.Unlock()
		return 0, 0, 0
	}
	c.view = v
	c.viewEnc = wire.AppendView(nil, &v)
	if st.Spares != nil {
		c.spares = st.Spares
	}
	var try []int
	for i, nd := range c.nodes {
		sn := st.Nodes[i]
		m := v.Servers[i]
		nd.inc = sn.Inc
		if sn.Host != "" {
			nd.host = sn.Host
		}
		nd.hb, nd.counted = wire.Heartbeat{ID: uint32(i), Incarnation: sn.Inc, PID: uint32(sn.PID), Addr: m.Addr, PeerAddr: m.PeerAddr, CtlAddr: m.CtlAddr}, 0
		if sn.PID > 0 {
			c.watchAdoptedLocked(nd, sn.PID, sn.Inc)
		}
		if liveMember(v, i, sn.Inc) {
			try = append(try, i)
		}
	}
	// From here on a heartbeat is judged against these records.
	c.readopt, c.adopting = true, false
	began := time.Now()
	for _, i := range try {
		c.nodes[i].unheard = began
	}
	c.mu.Unlock()
	// All at once: a server behind a cut costs its dial timeout, and
	// one after the other they held the takeover for a second each.
	var ok, no atomic.Int32
	var wg sync.WaitGroup
	for _, i := range try {
		wg.Go(func() {
			nd := c.nodes[i]
			// (The incarnation the order is for: read after its answer,
			// it was the replacement of one the core failed over
			// meanwhile, re-adopted "late" and counted as heard: a
			// review.)
			inc, pid := st.Nodes[i].Inc, st.Nodes[i].PID
			err := c.orderMove(l, nd)
			if err != nil {
				// Failed over if it stays silent (the core's grace).
				c.log.Warn().Err(err).Int("node", i).Msg("cannot re-adopt server")
				if errors.Is(err, syscall.ECONNREFUSED) {
					no.Add(1)
				}
				go c.readoptLate(l, i, inc)
				return
			}
			c.log.Info().Int("node", i).Uint64("inc", inc).Int("pid", pid).Msg("server re-adopted")
			c.mu.Lock()
			nd.unheard = time.Time{}
			c.mu.Unlock()
			ok.Add(1)
		})
	}
	// Once one server answered, one that has not by the time a dial may
	// take (and half a failure timeout more) counts as unanswered: the
	// core, started next, fails it over if it stays silent. Its order
	// goes on meanwhile (it still moves a server that answers late).
	// Waiting for every answer held the takeover for the whole control
	// timeout (8 s) on a frozen server: no failover, no respawn, its
	// shard unwritable (an attack; none at all while the lead moved
	// every 5 s). With no answer at all every order is waited for: the
	// takeover may restart the cluster from the logs on that.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.opts.Timing.Dial + c.opts.Timing.FailureTimeout/2):
		if ok.Load() == 0 {
			select {
			case <-done:
			case <-l.ctx.Done():
			}
		}
	case <-l.ctx.Done():
	}
	return int(ok.Load()), len(try), int(no.Load())
}

// watchAdoptedLocked watches process pid, incarnation inc of nd, which
// another leader spawned (c.mu held): its exit is reported, and it can
// be killed.
func (c *Coordinator) watchAdoptedLocked(nd *node, pid int, inc uint64) {
	var p Process
	if ad, ok := c.opts.Remote.(Adopter); ok && !hostname.IsLocal(nd.host) {
		p = ad.Adopt(nd.host, pid, nd.id, inc)
	} else {
		p = watchPID(pid, nd.id, inc, c.opts.Timing.Poll)
	}
	release(nd.proc) // a watcher left from a term it led before
	nd.proc, nd.procInc = p, inc
	go c.watchExit(nd, inc, p)
}

// orderMove tells nd to heartbeat to this coordinator (SETCOORD), as
// the leader of l's Raft term (in Epoch's high 32 bits, as a view's):
// the server refuses an order older than one it obeyed or a view it saw.
func (c *Coordinator) orderMove(l leadership, nd *node) error {
	return replyErr(c.control(l.ctx, nd, &wire.Frame{Op: wire.OpSetCoord, Epoch: l.term << 32, Value: []byte(c.serversAddr)}))
}

// readoptLate sends the takeover's order to move to this leader
// (SETCOORD) to incarnation inc of server i again, until it answers, the
// member is replaced or the lead ends. A server frozen past the order's
// timeout (a chaos review: kept as the last copy of a shard) otherwise
// went on heartbeating to the old leader when it resumed, and was failed
// over and respawned right after it had re-seeded another.
func (c *Coordinator) readoptLate(l leadership, i int, inc uint64) {
	nd := c.nodes[i]
	wait := c.opts.Timing.Poll
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, c.opts.Timing.FailureTimeout)
		c.mu.Lock()
		same := c.ld == l && nd.inc == inc
		c.mu.Unlock()
		if !same {
			return
		}
		if err := c.orderMove(l, nd); err != nil {
			continue
		}
		c.log.Info().Int("node", i).Uint64("inc", inc).Msg("server re-adopted late (it answered the order sent again)")
		c.mu.Lock()
		if c.ld == l && c.core != nil {
			c.core.Answered(i, inc, time.Now())
		}
		c.mu.Unlock()
		return
	}
}

// pidProc is a server process that is not our child (re-adopted): it is
// watched by polling and killed by pid, and only while that pid still runs
// server id's incarnation inc: after a reboot, or once the server died, the
// pid a state file names may belong to any other program.
type pidProc struct {
	pid, id int
	inc     uint64
	done    chan struct{}
	stop    chan struct{}
	once    sync.Once
}

func watchPID(pid, id int, inc uint64, poll time.Duration) *pidProc {
	p := &pidProc{pid: pid, id: id, inc: inc, done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		for {
			if !p.ours() {
				close(p.done)
				return
			}
			select {
			case <-p.stop:
				return
			case <-time.After(poll):
			}
		}
	}()
	return p
}

// Release stops watching without killing (another leader watches it now).
func (p *pidProc) Release()                  { p.once.Do(func() { close(p.stop) }) }
func (p *pidProc) Released() <-chan struct{} { return p.stop }

// ours reports whether pid still runs server id's incarnation inc (an
// exited server is not: gone, a zombie, or another program now).
func (p *pidProc) ours() bool {
	if err := syscall.Kill(p.pid, 0); errors.Is(err, syscall.ESRCH) || zombie(p.pid) {
		return false
	}
	return isServer(p.pid, p.id, p.inc)
}

// isServer reports whether process pid's command line is that of server
// id, incarnation inc, as serverArgs builds it.
func isServer(pid, id int, inc uint64) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	var gotID, gotInc bool
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-id":
			gotID = args[i+1] == strconv.Itoa(id)
		case "-inc":
			gotInc = args[i+1] == strconv.FormatUint(inc, 10)
		}
	}
	return gotID && gotInc
}

// zombie reports whether pid has exited but not been reaped (it is not our
// child, and whoever reaps it may take its time).
func zombie(pid int) bool {
	f, ok := procStat(pid)
	return ok && f[0] == "Z"
}

// procStat is pid's /proc/PID/stat after the parenthesised command name:
// its state first (field 3), utime and stime at 11 and 12 (fields 14 and
// 15); false when it cannot be read.
func procStat(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(b[i+1:]))
	return f, len(f) > 0
}

func (p *pidProc) PID() int              { return p.pid }
func (p *pidProc) Done() <-chan struct{} { return p.done }
func (p *pidProc) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if !p.ours() {
		return nil // already gone; the pid may be another program's now
	}
	return syscall.Kill(p.pid, syscall.SIGKILL)
}
