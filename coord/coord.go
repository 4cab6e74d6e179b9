package coord

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"ftkv/coord/decide"
	"ftkv/internal/auth"
	"ftkv/internal/connlimit"
	"ftkv/internal/gnetlog"
	"ftkv/internal/hostname"
	"ftkv/internal/metrics"
	"ftkv/internal/poll"
	"ftkv/limits"
	"ftkv/wire"
)

// Coordinator starts the servers, publishes the view and watches heartbeats.
type Coordinator struct {
	opts   Options
	log    zerolog.Logger
	secret string
	n      int

	mu       sync.Mutex
	view     wire.View
	viewEnc  []byte
	nodes    []*node
	regCh    chan struct{}
	started  bool
	shutting bool
	// stopping: stopServers or killAll runs (the servers are stopped;
	// a group member that only steps down leaves them running).
	stopping bool
	// spawns counts spawn calls under way (Add under mu while not
	// shutting): stopServers waits for them, since one that has not
	// returned yet is a process nobody else will stop.
	spawns sync.WaitGroup

	// core decides every failover while this coordinator leads (nil
	// before its takeover has the records, and on a follower); ld is the
	// leadership it belongs to.
	core *decide.Core
	ld   leadership
	// readopt: the records come from a committed state and no core
	// exists yet; a heartbeat is judged against the committed view.
	readopt bool
	stamped uint64 // the highest epoch ever stamped on a view
	// testHookPublish, when set, runs as publish starts (tests widen the
	// window between a decision and its publication with it).
	testHookPublish func()
	testHookSave    func()     // runs as saveState starts
	pending         *wire.View // being published: committed, not visible yet
	adopting        bool       // re-adopting: heartbeats are not judged yet
	tookOver        bool       // this leadership's takeover returned (adopted or failed)
	coreAt          time.Time  // when the core started (handoff.go)
	askedWitness    time.Time  // when a leader that did not hear some servers last asked the others (handoff.go)
	handingOff      bool       // that question is under way (handoff.go)
	askedAbout      []string   // the control addresses of the servers it was asked about
	reach           reachCache // how many servers this coordinator reached lately (handoff.go)
	restarting      bool       // this start follows a committed view (initialPlacement)
	// noLogs: no run of this cluster logged its writes before this start
	// (clusterState.NoLogs): a restart has no log to bring it back from,
	// and starts empty, whatever data_dir says now. A cluster that ran
	// with logs started with data_dir none has every shard unavailable
	// (it was served empty).
	noLogs bool
	// current: which copies hold every acknowledged write, committed with
	// every view (decide.Current). firstDurable: while the first view of
	// a start is being applied, the log indexes it was placed by (a
	// secondary counts as current only once it is whole).
	current      decide.Current
	firstDurable []map[int]uint64
	// narrow: per shard the start leaves unavailable, the copies it
	// waits for (awaited); the record keeps only those while the start's
	// first view is committed (narrowCurrent).
	narrow decide.Current
	saved  savedRecord // what the last view committed knew of dead primaries
	// lastView, lastStopped: the committed view a start follows, and
	// whether the cluster was stopped in order (aloneLocked), and which
	// servers that stop found gone or starting (lastUnstopped).
	lastView      wire.View
	lastStopped   bool
	lastUnstopped []int
	// unstopped: the servers this coordinator's stop did not stop in
	// order (stopServers), recorded with the stop (saveStop).
	unstopped []int
	spares    []string // spare hosts not yet taken
	// home is the working directory of local servers (their dumps, and
	// a relative data_dir, land there): the first leader's, committed
	// with the cluster's state, so that every later leader of a group
	// spawns them where their data is, whatever its own working
	// directory (a review: three coordinators started in directories of
	// their own, a restart led by another one found no log and every
	// shard unavailable).
	home   string
	saveMu sync.Mutex
	// final: the orderly stop was committed (saveMu); it stays the last
	// state this coordinator commits.
	final bool

	// The control plane: this coordinator's Raft member (store is the
	// same, or a memStore in tests of the decisions), whether it leads
	// and since which term, and how to stop its leadership's work.
	store      stateStore
	rn         *raftNode
	fsm        *fsm
	leading    bool
	term       uint64
	leadCancel context.CancelFunc
	startErr   chan error // the single coordinator's first takeover
	// verified is when the last successful check that this coordinator
	// still leads a quorum started (monotonic): heartbeats renew leases
	// only within RaftLeaderLease of it.
	verified time.Time
	// stopped is closed when the group committed an orderly stop of the
	// whole cluster (a client's shutdown order): every coordinator exits.
	stopped     chan struct{}
	stoppedOnce sync.Once
	frozen      freezeWatch
	sawStop     atomic.Bool // applied a stop of the cluster it ran (not replayed)
	// stopClusterDone is made as StopCluster starts and closed once it
	// is over (c.mu).
	stopClusterDone chan struct{}
	// fatal carries an error that makes this coordinator useless (the
	// committed cluster does not match its config): the command exits.
	fatal chan error

	clientAddr, serversAddr string
	ports                   []*connlimit.Port
	budget                  *connlimit.Budget // queued output of both ports
	rounds                  statusRounds      // clients' STATUS requests waiting for the servers' counts (counts.go)
	sdAsked                 sdAsked           // a follower's /sd targets, asked of the servers

	met       *coordMetrics     // metrics.go
	metricsLn *metrics.Listener // -metrics (nil: off)
	gate      *auth.Gate        // client authentication (auth.go; nil: no users)
}

// node is the coordinator's record of one server.
type node struct {
	id       int
	spec     ServerSpec
	host     string // where it runs: spec.Host, or a spare it moved to
	inc      uint64 // the newest incarnation (the core chose it)
	proc     Process
	procInc  uint64         // proc's incarnation
	hb       wire.Heartbeat // the last accepted heartbeat (addresses, counts)
	counted  uint64         // the epoch of hb's key counts when a view's push answered them (viewCounts)
	unheard  time.Time      // a takeover's SETCOORD to it began then and is unanswered (zero: answered, or heard)
	lastSeen time.Time      // when it arrived (status)
	reported bool           // a heartbeat of inc arrived (start-up)
	exited   uint64         // the newest incarnation whose exit was seen (it is dead)
	ctl      *ctlConn
	counts   *ctlConn // the status rounds' own link (askCounts): never an order's
	// The link its last heartbeat came on, and that link's socket, while
	// open (heartbeatsUnread).
	hbConn gnet.Conn
	hbFd   int
}

// sawExit records that incarnation inc of nd is dead (its process
// exited), before the core hears of it.
func (c *Coordinator) sawExit(nd *node, inc uint64) {
	c.mu.Lock()
	nd.exited = max(nd.exited, inc)
	c.mu.Unlock()
}

// limits are the cluster file's client limits with the command line's
// flags over them.
func (c *Coordinator) limits() limits.Config {
	l := c.opts.Cluster.Limits
	l.Override(c.opts.LimitFlags)
	return l
}

// storage is where and how servers log: the cluster file's lines, each
// overridden by its flag.
func (c *Coordinator) storage() Storage {
	return c.opts.Cluster.Storage.override(c.opts.StorageFlags)
}

// schedPolicy is the servers' -sched: the flag's, else the file's.
func (c *Coordinator) schedPolicy() string {
	if c.opts.SchedFlag != "" {
		return c.opts.SchedFlag
	}
	return c.opts.Cluster.Sched
}

// New validates opts and returns a coordinator ready to Start.
func New(opts Options) (*Coordinator, error) {
	if opts.Cluster == nil || len(opts.Cluster.Servers) == 0 {
		return nil, errors.New("a cluster with at least one server is required")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Cluster.CheckPorts(FlagPort{Port: opts.ClientPort}, FlagPort{Port: opts.ServersPort}); err != nil {
		return nil, err
	}
	if k := len(opts.Cluster.Coordinators); k > 0 && (opts.ID < 0 || opts.ID >= k) {
		return nil, fmt.Errorf("-id %d: %s has %d coordinator lines: expected -id 0 to %d", opts.ID, opts.Cluster.Path, k, k-1)
	}
	if err := checkAuth(&opts); err != nil {
		return nil, err
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.tls, err = loadTLS(opts.Cluster.At, opts.Cluster.TLS.override(opts.TLSFlags)); err != nil {
		return nil, err
	}
	if f := cmp.Or(opts.GroupSecretFile, opts.Cluster.GroupSecret); f != "" {
		if opts.groupKey, err = loadGroupKey(f); err != nil {
			if opts.GroupSecretFile == "" {
				return nil, fmt.Errorf("%s: %w", opts.Cluster.At("group_secret_file"), err)
			}
			return nil, fmt.Errorf("-group-secret-file: %w", err)
		}
		if mode, open := openToOthers(f); open {
			opts.Logger.Warn().Str("file", f).Str("mode", fmt.Sprintf("%04o", mode)).Msg("group_secret_file is open to other users: chmod 600 it (it lets its holder into the coordinators' Raft port)")
		}
	}
	var sb [16]byte
	_, _ = rand.Read(sb[:])
	c := &Coordinator{
		opts:    opts,
		log:     opts.Logger,
		secret:  hex.EncodeToString(sb[:]),
		n:       len(opts.Cluster.Servers),
		regCh:   make(chan struct{}, 1),
		stopped: make(chan struct{}),
		fatal:   make(chan error, 1),
		met:     newCoordMetrics(),
		home:    opts.Dir,
	}
	c.budget = connlimit.NewBudget(c.limits().WithDefaults().OutputBudget)
	if opts.tls != nil {
		opts.tls.mat.LogReloads(c.log)
	}
	c.gate = c.newGate()
	c.registerGauges()
	if err := c.limits().Validate(); err != nil {
		// (Points at the file's line of a setting the message names.)
		var named []string
		for _, s := range limits.Settings {
			if strings.Contains(err.Error(), s.Line) {
				named = append(named, s.Line)
			}
		}
		return nil, fmt.Errorf("%s: %w", opts.Cluster.At(named...), err)
	}
	var local []int
	for i, s := range opts.Cluster.Servers {
		c.nodes = append(c.nodes, &node{id: i, spec: s, host: s.Host})
		if s.Local() {
			local = append(local, i)
		}
	}
	if err := c.storage().checkLocal(opts.Dir, local); err != nil {
		switch {
		case c.opts.StorageFlags.DataDir != "":
			return nil, fmt.Errorf("-data-dir %s: %w", c.opts.StorageFlags.DataDir, err)
		case c.opts.Cluster.Lines["data_dir"] > 0:
			return nil, fmt.Errorf("%s: data_dir %s: %w", c.opts.Cluster.At("data_dir"), c.opts.Cluster.Storage.DataDir, err)
		}
		return nil, fmt.Errorf("data_dir %s (the default; %s sets none): %w", DefaultDataDir, c.opts.Cluster.Path, err)
	}
	for _, s := range opts.Cluster.Spares {
		c.spares = append(c.spares, s.Host)
	}
	return c, nil
}

// View returns the current view.
func (c *Coordinator) View() wire.View {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cloneView(c.view)
}

// ClientAddr and ServersAddr are the bound addresses once Start returned.
func (c *Coordinator) ClientAddr() string  { return c.clientAddr }
func (c *Coordinator) ServersAddr() string { return c.serversAddr }

// group reports whether this coordinator is one of a group (coordinator
// lines in the config) rather than a single one.
func (c *Coordinator) group() bool { return len(c.opts.Cluster.Coordinators) > 0 }

// Start opens this coordinator's Raft member and its servers port. A
// single coordinator then waits until it leads and has taken the cluster
// over (spawned every server and published the first view, or re-adopted
// the running servers), and opens its client port. A member of a group
// opens its client port at once: whichever member leads takes the
// cluster over; followers answer views and status from the replicated
// state. On error, whatever was started is stopped.
func (c *Coordinator) Start(ctx context.Context) error {
	if err := c.startMetrics(); err != nil {
		return fmt.Errorf("-metrics %s: %w", c.opts.MetricsAddr, err)
	}
	if !c.group() && c.opts.ClientPort != 0 {
		// The client port opens only once the cluster is up: a port
		// another program holds is found now, before the Raft store is
		// made or any server spawned (it was found after, the servers
		// started for nothing).
		if err := portFree(c.opts.Bind, c.opts.ClientPort); err != nil {
			c.closeMetrics()
			return fmt.Errorf("client port %d: %w", c.opts.ClientPort, err)
		}
	}
	c.fsm = &fsm{onApply: c.applied}
	rn, err := openRaft(c.opts, c.fsm, c.log)
	if err != nil {
		c.closeMetrics()
		return err
	}
	c.rn, c.store = rn, rn
	if st, ok := c.fsm.state(); !ok || st.Secret == "" {
		if s := c.fsm.loggedSecret(); s != "" {
			c.mu.Lock()
			c.secret = s
			c.mu.Unlock()
		}
	}
	c.startErr = make(chan error, 1)
	serversPort, clientPort := c.opts.ServersPort, c.opts.ClientPort
	if c.group() {
		me := c.opts.Cluster.Coordinators[c.opts.ID]
		serversPort, clientPort = me.ServersPort, me.ClientPort
	}
	addr, err := c.listen(&serversHandler{c: c}, "servers", serversPort)
	if err != nil {
		rn.close()
		return fmt.Errorf("servers port %d: %w", serversPort, err)
	}
	c.serversAddr = addr
	if c.group() {
		// Servers are told the address of the line (the bound one may
		// be 0.0.0.0 for a host name).
		c.serversAddr = c.opts.Cluster.Coordinators[c.opts.ID].ServersAddr()
	}
	c.log.Info().Str("addr", addr).Msg("servers port listening")
	go c.frozen.run(c.stopped)
	go c.watchLeadership()
	if !c.group() {
		select {
		case err = <-c.startErr:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			c.killAll()
			rn.close()
			return err
		}
	}
	addr, err = c.listen(&clientsHandler{c: c}, "clients", clientPort)
	if err != nil {
		c.killAll()
		rn.close()
		return fmt.Errorf("client port %d: %w", clientPort, err)
	}
	c.clientAddr = addr
	c.mu.Lock()
	c.started = true
	epoch := c.view.Epoch
	c.mu.Unlock()
	c.log.Info().Str("addr", addr).Int("servers", c.n).Uint64("epoch", epoch).Msg("client port listening")
	return nil
}

// watchLeadership starts the leader's work when this coordinator becomes
// the Raft leader and stops it when it loses the leadership.
func (c *Coordinator) watchLeadership() {
	for lead := range c.rn.notify {
		c.mu.Lock()
		if c.shutting {
			c.mu.Unlock()
			return
		}
		if c.leadCancel != nil {
			c.leadCancel()
			c.leadCancel = nil
		}
		// A core decides for one leadership only: the next one starts
		// from the committed state.
		c.core, c.ld, c.readopt = nil, leadership{}, false
		if !lead {
			// Watching the servers is the leader's work: a follower
			// keeps no ssh session open to each (a takeover watches
			// them anew).
			c.releaseWatchersLocked()
		}
		c.leading = lead
		if lead {
			// Read after the notice: a member deposed in between reads its
			// successor's term, but nothing carries the term before
			// takeOver's Barrier, which only a leader passes (terms only
			// grow: one that passes leads the term read, or a later one).
			c.term = c.rn.r.CurrentTerm()
			// Until the takeover has the nodes' records, a heartbeat
			// must not be judged (and refused) against stale ones.
			c.adopting, c.tookOver = true, false
			ctx, cancel := context.WithCancel(context.Background())
			c.leadCancel = cancel
			c.ld = leadership{ctx: ctx, events: make(chan decide.Event, 1024), term: c.term}
			go c.lead(c.ld, c.term)
		}
		term := c.term
		c.mu.Unlock()
		if lead {
			c.log.Info().Uint64("term", term).Msg("leading the coordinators")
		} else {
			c.log.Warn().Uint64("term", term).Msg("no longer leading the coordinators; standing by")
		}
	}
}

// lead takes the cluster over as the new leader and runs the reconcile
// loop until the leadership ends (l.ctx).
func (c *Coordinator) lead(l leadership, term uint64) {
	go c.verifyLeadership(l.ctx)
	wait := c.opts.Timing.FailureTimeout // before a takeover that failed is tried again
	for {
		err := c.takeOver(l)
		c.mu.Lock()
		c.tookOver = true
		c.mu.Unlock()
		select {
		case c.startErr <- err: // the first takeover of a single coordinator
		default:
		}
		if errors.Is(err, errStopped) || errors.Is(err, errHandedOff) {
			return
		}
		if err == nil {
			c.loop(l)
			return
		}
		c.log.Error().Err(err).Uint64("term", term).Msg("cannot take the cluster over")
		if errors.Is(err, ErrConfigMismatch) {
			c.die(err)
		}
		if !c.group() || l.ctx.Err() != nil {
			return
		}
		// Never sit on a leadership it cannot use: another member may
		// take the cluster over; if none can be given the lead now (the
		// others down or stalled), the takeover is tried again.
		if c.rn.r.LeadershipTransfer().Error() == nil {
			return
		}
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 8*c.opts.Timing.FailureTimeout)
		c.mu.Lock()
		if c.ld != l || c.shutting {
			c.mu.Unlock()
			return
		}
		c.adopting, c.tookOver = true, false
		c.mu.Unlock()
		c.log.Warn().Uint64("term", term).Msg("nobody took the lead: taking the cluster over again")
	}
}

// serverRefused is bin/server's exit status for a data directory it
// refuses (server.ExitDataDirRefused): another server's or cluster's. No
// retry can help; other failures at start are retried.
const serverRefused = 3 // (TestServerRefusedStatus: the same number)

// refusedLine is the line bin/server writes last before it exits
// serverRefused (server.RefusedLine; TestServerRefusedStatus): over ssh
// the coordinator finds it in the server's log.
func refusedLine(id int, inc uint64, pid int) string {
	return fmt.Sprintf("ftkv: server %d incarnation %d pid %d: data directory refused, exit status %d", id, inc, pid, serverRefused)
}

// refusedDir is a server's refusal of its data directory: a start that
// cannot succeed as configured, as ErrConfigMismatch, whose words ("the
// config does not describe the committed cluster") it does not take: a
// directory that is no server's is not the config's fault.
type refusedDir struct{ error }

func (refusedDir) Is(target error) bool { return target == ErrConfigMismatch }

// ErrConfigMismatch: the committed cluster is not the one the config
// describes (a config edited between runs).
var ErrConfigMismatch = errors.New("the config does not describe the committed cluster")

// Fatal carries an error after which this coordinator cannot serve (the
// config does not match the committed cluster): the command exits 2.
func (c *Coordinator) Fatal() <-chan error { return c.fatal }

func (c *Coordinator) die(err error) {
	select {
	case c.fatal <- err:
	default:
	}
}

// verifyLeadership checks, four times per leader lease, that this
// coordinator still leads a quorum, and records when a check that
// succeeded started. A leader cut off from the others (or stopped and
// resumed) stops renewing servers' leases within RaftLeaderLease of its
// last contact with a quorum; a new leader is elected no sooner than
// RaftHeartbeat after that contact and fails a server on silence no
// sooner than one failure timeout after it took the cluster over (the
// core's grace, decide.New), and a server's lease (its
// last renewal, at most RaftLeaderLease after the contact, plus Lease)
// has run out well before.
func (c *Coordinator) verifyLeadership(ctx context.Context) {
	period := c.opts.Timing.RaftLeaderLease / 4
	for {
		start := time.Now()
		if err := c.rn.r.VerifyLeader().Error(); err == nil {
			c.mu.Lock()
			if start.After(c.verified) {
				c.verified = start
			}
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

// takeOver starts the cluster from the committed state: a fresh one
// (none yet, or stopped in order) is spawned and gets its first view; a
// running one is re-adopted and gets its view again, with an epoch of
// this leader's term, so views of a deposed leader are stale everywhere.
func (c *Coordinator) takeOver(l leadership) error {
	ctx := l.ctx
	// Every decision of the previous leaders applied here first.
	if err := c.rn.r.Barrier(c.opts.Timing.RaftApply).Error(); err != nil {
		return fmt.Errorf("raft barrier: %w", err)
	}
	if c.sawStop.Load() {
		// It saw the cluster stopped (and exits): a coordinator of the
		// run that was stopped never starts it again, only one started
		// afresh does.
		return errStopped
	}
	st, _ := c.fsm.state()
	v, running, err := c.savedView(st)
	if err != nil {
		return err
	}
	c.mu.Lock()
	// A cluster that ran before (its last view is committed) starts again.
	c.restarting = len(st.View) > 0
	c.noLogs = !c.restarting || st.NoLogs
	c.lastView, c.lastStopped, c.lastUnstopped = wire.View{}, st.Stopped, st.Unstopped
	if lv, err := wire.DecodeView(st.View); err == nil && c.restarting {
		c.lastView = lv
	}
	c.current, c.firstDurable, c.narrow = decide.AllCurrent(c.n), nil, nil
	if len(st.Current) == c.n {
		c.current = st.Current
	}
	if st.Secret != "" {
		c.secret = st.Secret
	}
	if st.Spares != nil {
		c.spares = st.Spares
	}
	if st.Home != "" && st.Home != c.home && c.group() {
		// (A group only: one coordinator's directory is its cluster's,
		// and a copy of that directory runs on its own data.)
		if fi, err := os.Stat(st.Home); err == nil && fi.IsDir() {
			c.log.Info().Str("dir", st.Home).Msg("local servers run in the cluster's directory (its first leader's working directory), not this coordinator's")
			c.home = st.Home
		} else {
			c.log.Warn().Str("dir", st.Home).Str("instead", c.home).Msg("the cluster's directory for local servers is not on this host; they run in this coordinator's working directory (set an absolute data_dir, or start every coordinator in one directory)")
		}
	}
	for i, sn := range st.Nodes {
		if i < len(c.nodes) && sn.Inc > c.nodes[i].inc {
			c.nodes[i].inc = sn.Inc // incarnation numbers are never reused
		}
	}
	if !running {
		c.adopting = false
	}
	c.mu.Unlock()
	answered := 0
	if running {
		var live, refused int
		answered, live, refused = c.adopt(l, st, v)
		if answered < live && c.group() {
			// A member elected while cut off from servers (a review: one
			// cut from all three took the lead when the leader stalled,
			// took them for dead, and restarted the cluster from the
			// servers' logs, failing at it over ssh for 28 s): another
			// coordinator that reaches more of them takes the cluster.
			// Before a restart from the logs, the others that gave no
			// answer are asked again for a while (a review: the one that
			// reached every server was paused and answered 0.6 s late,
			// and the cluster was restarted; one just restarted refuses
			// the question until it has the cluster's secret).
			deadline := time.Now().Add(c.opts.Timing.Handshake)
			for {
				k, n, unanswered := c.askOthers(ctx, live)
				if k >= 0 && n > answered {
					c.log.Warn().Int("reached", answered).Int("of", live).Int("coordinator", k).Int("reaches", n).
						Msg("servers unreached at takeover: handing the lead to a coordinator that reaches more of them")
					if c.handOff(k) {
						return errHandedOff
					}
					// Never a restart from the logs, or a failover, of
					// servers another coordinator reaches (lead hands
					// the lead to any other member).
					return fmt.Errorf("coordinator %d reaches %d servers, this one %d, and the hand-off failed", k, n, answered)
				}
				if answered == 0 && unanswered > 0 && refused == 0 && time.Now().After(deadline) {
					// No server answered, no host said that none runs
					// there (a refused connection), and a coordinator
					// that may reach them gave no answer: this one may
					// be cut off from every server. A restart from the
					// logs would fail through the cut and, once it heals,
					// replace every server that ran on (an attack: the
					// one coordinator that reached them all was paused
					// 5 s). Another member takes the cluster over.
					return errNoServerReached
				}
				if answered > 0 || unanswered == 0 || time.Now().After(deadline) || ctx.Err() != nil {
					break
				}
				select {
				case <-time.After(c.probeWithin()):
				case <-ctx.Done():
				}
			}
		}
	}
	if ctx.Err() != nil {
		// Deposed meanwhile (a review: the adoption's dials all failed
		// as the lead went, and the restart below killed the servers
		// the new leader runs).
		return fmt.Errorf("no longer leading: %w", ctx.Err())
	}
	if running && answered == 0 && c.storage().ServerDir(0) != "" {
		// Every process died at once (a power cut, kill -9 of all): the
		// servers' logs hold the cluster; start it again from them.
		c.log.Warn().Uint64("epoch", v.Epoch).Msg("no server of the running cluster answers: restarting it from the servers' logs")
		c.mu.Lock()
		c.readopt = false
		c.releaseWatchersLocked() // (the adoption's: the restart kills and replaces them)
		c.mu.Unlock()
		running = false
	}
	if running {
		c.log.Warn().Uint64("epoch", v.Epoch).Msg("taking over running servers")
		nv := c.View()
		nv.Epoch++ // restamped with this leader's term
		if _, err := c.commitView(nv); err != nil {
			return fmt.Errorf("the view of this leader's term was not committed: %w", err)
		}
		c.met.published("takeover")
		return c.startCore(l, true, false)
	}
	// A start interrupted before its first view (the leader killed) left
	// its incarnations running: they would hold fixed ports.
	kctx, cancel := context.WithTimeout(ctx, c.opts.Timing.Start)
	c.killOrphans(kctx, st)
	cancel()
	for attempt := 1; ; attempt++ {
		err := c.startAll(ctx)
		if err == nil {
			break
		}
		c.killSpawned()
		// A server that dies while the first view re-seeds a differing
		// copy (a restart) fails the attempt, not the cluster: the logs
		// are all still there.
		if attempt >= startRetries || ctx.Err() != nil || !errors.Is(err, errFirstView) {
			return err
		}
		c.log.Warn().Err(err).Int("attempt", attempt).Msg("the cluster's start failed; starting it again")
		select {
		case <-time.After(c.opts.Timing.RespawnMin << attempt):
		case <-ctx.Done():
			return err
		}
	}
	// Every member applied the first view, each re-seeding a copy that
	// differed: both copies of every shard are whole now.
	c.mu.Lock()
	c.firstDurable, c.narrow = nil, nil // (narrow is read only with firstDurable)
	c.mu.Unlock()
	if err := c.saveState(); err != nil {
		return fmt.Errorf("the current copies after the first view were not committed: %w", err)
	}
	c.log.Info().Int("servers", c.n).Uint64("epoch", c.View().Epoch).Msg("cluster ready")
	return c.startCore(l, false, true)
}

// errStopped: the coordinator that leads saw the cluster stopped.
var errStopped = errors.New("the cluster was stopped")

// errHandedOff: the takeover gave the lead to a coordinator that reaches
// more of the servers.
var errHandedOff = errors.New("the lead was handed to a coordinator that reaches more servers")

// errNoServerReached: the takeover reached no server, none refused the
// connection, and some coordinator did not say how many it reaches.
var errNoServerReached = errors.New("no server answers, none is known to be down, and some coordinator did not answer: this one may be cut off from the servers")

// errFirstView marks a start that failed while its first view was being
// applied (after every server had registered).
var errFirstView = errors.New("first view not applied")

// startAll spawns every server, waits until all registered (within
// Timing.Start, or Timing.Recover for servers whose processes still run)
// and publishes the first view (within Timing.SeedLimit: it may re-seed
// differing copies).
func (c *Coordinator) startAll(ctx context.Context) error {
	begun := time.Now()
	sctx, cancel := context.WithTimeout(ctx, c.opts.Timing.Start)
	defer cancel()
	unspawned, err := c.spawnAll(sctx)
	if err != nil && !c.mayStartWithout() {
		return err
	}
	rctx, rcancel := context.WithTimeout(ctx, c.opts.Timing.Recover)
	defer rcancel()
	without, err := c.waitRegistered(rctx, begun, unspawned)
	if err != nil {
		return err
	}
	pctx, pcancel := context.WithTimeout(ctx, c.opts.Timing.SeedLimit)
	defer pcancel()
	if err := c.publishInitialView(pctx, without); err != nil {
		return fmt.Errorf("%w: %w", errFirstView, err)
	}
	return nil
}

// startRetries is how many times a server that exits during the
// cluster's start is started again.
const startRetries = 4

// killOrphans kills the committed incarnations of a cluster that has no
// view (a start that never finished), each only while its pid still runs
// that server's incarnation, and waits until they are gone.
func (c *Coordinator) killOrphans(ctx context.Context, st clusterState) {
	for i, sn := range st.Nodes {
		if sn.PID <= 0 || i >= len(c.nodes) || st.Stopped || ctx.Err() != nil {
			continue
		}
		var p Process
		if ad, ok := c.opts.Remote.(Adopter); ok && sn.Host != "" && !hostname.IsLocal(sn.Host) {
			p = ad.Adopt(sn.Host, sn.PID, i, sn.Inc)
		} else {
			pp := watchPID(sn.PID, i, sn.Inc, c.opts.Timing.Poll)
			if !pp.ours() {
				continue // gone already (killed with the rest): nothing to kill, nothing to say
			}
			p = pp
		}
		if err := p.Kill(); err != nil {
			c.log.Warn().Err(err).Int("node", i).Int("pid", sn.PID).Msg("cannot kill an incarnation of an unfinished start")
			continue
		}
		select {
		case <-p.Done():
			c.log.Warn().Int("node", i).Uint64("inc", sn.Inc).Int("pid", sn.PID).Msg("killed an incarnation of an unfinished start")
		case <-time.After(c.opts.Timing.KillWait):
		case <-ctx.Done():
		}
		release(p)
	}
}

// startCore hands the cluster to a decision core, from the current view
// and the records: live members serve (silent from now: a grace of one
// failure timeout). After a takeover none counts as having applied the
// view (hole 4): with push it is sent to every live member at once, and
// each one that does not confirm it is sent it again. After a fresh
// start (applied) every live member answered the first view's SETVIEW.
func (c *Coordinator) startCore(l leadership, push, applied bool) error {
	c.mu.Lock()
	if c.ld != l {
		c.mu.Unlock()
		return errors.New("no longer leading")
	}
	incs := make([]uint64, len(c.nodes))
	hosts := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		incs[i], hosts[i] = nd.inc, nd.host
	}
	core, err := decide.New(decide.FromTiming(c.opts.Timing), c.view, incs, hosts, c.spares, time.Now())
	if err != nil {
		c.mu.Unlock()
		return err
	}
	core.SetCurrent(c.current)
	for i, nd := range c.nodes {
		if push && !nd.unheard.IsZero() {
			core.Unheard(i, nd.unheard) // (its grace has passed: judged with the others)
		}
		nd.unheard = time.Time{}
	}
	c.core, c.readopt, c.adopting = core, false, false
	c.coreAt = time.Now()
	for i := range c.nodes {
		if n := core.Node(i); n.State == decide.Respawning {
			// The previous leader's respawn: awaited as one of this
			// core's (respawn).
			go c.awaitRespawn(l, decide.Spawn{ID: i, Inc: n.Inc, Host: n.Host})
		}
	}
	v := core.View()
	var acts []decide.Action
	for i, m := range v.Servers {
		live := (m.State == wire.StateServing || m.State == wire.StateReseeding) && core.Lease(i, m.Incarnation)
		switch {
		case live && push:
			acts = append(acts, decide.Push{ID: i, Inc: m.Incarnation, View: cloneView(v)})
		case live && applied:
			// A fresh start: every member answered the first view's
			// SETVIEW (publishInitialView waited for all of them).
			acts = append(acts, core.Step(decide.PushResult{ID: i, Inc: m.Incarnation, Epoch: v.Epoch, OK: true})...)
		}
	}
	c.mu.Unlock()
	c.execute(l, acts)
	return nil
}

// applied follows the committed state on a coordinator that does not
// lead, so it answers clients' view and status requests and checks
// servers' HELLOs with the cluster's secret.
func (c *Coordinator) applied(st clusterState, old bool) {
	c.sawStop.Store(st.Stopped && !old)
	if st.Stopped && c.group() && !old {
		// (A stop of an earlier run, replayed at start, is not one:
		// the group starts the cluster again.)
		stop, _ := c.fsm.lastApplied()
		go c.stopGroupMember(stop, "committed", c.fsm.appliedLate())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leading {
		return // its own decisions: its records are ahead of them
	}
	if st.Secret != "" {
		c.secret = st.Secret
	}
	for i, sn := range st.Nodes {
		if i < len(c.nodes) {
			c.nodes[i].inc, c.nodes[i].host = sn.Inc, sn.Host
		}
	}
	v, ok, err := c.savedView(st)
	if err == nil && ok {
		c.view = v
		c.viewEnc = wire.AppendView(nil, &v)
	}
	if errors.Is(err, ErrConfigMismatch) {
		c.log.Error().Err(err).Msg("cannot follow the committed cluster")
		c.die(err)
	}
}

// clusterID names the cluster in its servers' data directories: drawn
// from its secret, which is random, made with the cluster's first
// committed state and kept in it, and never shown. A cluster whose
// coordinators lost their state gets a new secret and so a new ID, which
// each server's first incarnation then records (SpawnSpec.AdoptCluster).
func clusterID(secret string) string {
	h := sha256.Sum256([]byte("ftkv cluster id\x00" + secret))
	return hex.EncodeToString(h[:8])
}

// clusterSecret is the secret servers authenticate with.
func (c *Coordinator) clusterSecret() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.secret
}

// nextEpochLocked is the epoch of the view after the current one: it
// carries the leader's Raft term in its high 32 bits, so every view of a
// later leader is newer than any view of an earlier one (c.mu held).
func (c *Coordinator) nextEpochLocked() uint64 {
	e := max(c.view.Epoch, c.stamped) + 1
	if t := c.term<<32 | 1; t > e {
		e = t
	}
	return e
}

// maxServerConns bounds the connections to the servers port (at the
// bound, a new connection evicts the oldest one not authenticated).
const maxServerConns = 1024

// listen serves port with h under the client limits (connlimit): a
// client of the coordinator is held to the same bounds as a server's
// (connections, queued output, half frames, input held: each port has
// an input budget of its own), and running out of descriptors never
// stops the engine. Frames to the coordinator are small: the servers
// port takes 4 KiB until HELLO matched, which must come within the
// handshake bound, the client port 64 KiB.
func (c *Coordinator) listen(h gnet.EventHandler, name string, port int) (string, error) {
	l := c.limits().WithDefaults()
	cfg := connlimit.FromLimits(name, l, c.log)
	cfg.Budget, cfg.InputBudget = c.budget, connlimit.NewInputBudget(l.InputBudget)
	cfg.PreAuthMaxFrame = maxClientFrame
	if name == "servers" {
		// Only the cluster's servers connect here: max_clients is for
		// clients (a small one must not lock the servers out), and a
		// connection that does not authenticate in time is closed.
		cfg.PreAuthMaxFrame, cfg.MaxConns = connlimit.PreAuthMaxFrame, maxServerConns
		cfg.RequireAuth, cfg.AuthTimeout = true, c.opts.Timing.Handshake
	}
	cfg.Evict = name == "clients"
	if name == "clients" && c.gate != nil {
		// With users, a client's first frame is a small HELLO (auth.go).
		cfg.PreAuthMaxFrame, cfg.RequireAuth = connlimit.PreAuthMaxFrame, true
		cfg.AuthTimeout = 3 * c.opts.Timing.Handshake
		cfg.MaxFrame = maxClientFrame // (after HELLO; 64 KiB, as without users)
	}
	if t := c.opts.tls; t != nil {
		cfg.TLS = t.clients
		if name == "servers" {
			cfg.TLS = t.servers
		}
	}
	p, err := connlimit.Listen(net.JoinHostPort(c.opts.Bind, strconv.Itoa(port)), h, cfg,
		gnet.WithLogger(gnetlog.Logger{L: c.log}), gnet.WithNumEventLoop(1), gnet.WithTCPNoDelay(gnet.TCPNoDelay))
	if err != nil {
		return "", err
	}
	c.ports = append(c.ports, p)
	go func() {
		if err := <-p.Err(); err != nil {
			c.log.Error().Err(err).Str("port", name).Msg("port stopped")
		}
	}()
	return net.JoinHostPort(c.opts.Bind, strconv.Itoa(p.Addr().(*net.TCPAddr).Port)), nil
}

// spawnAll spawns every server; failed holds the error of each that
// could not be spawned, err all of them.
func (c *Coordinator) spawnAll(ctx context.Context) (failed map[int]error, err error) {
	var wg sync.WaitGroup
	errs := make([]error, c.n)
	for i := range c.nodes {
		wg.Add(1)
		go func(nd *node) {
			defer wg.Done()
			c.mu.Lock()
			inc, host := nd.inc+1, nd.host
			c.mu.Unlock()
			errs[nd.id] = c.spawn(ctx, nd, inc, host)
			c.met.spawnedAtStart()
		}(c.nodes[i])
	}
	wg.Wait()
	failed = map[int]error{}
	for i, e := range errs {
		if e != nil {
			failed[i] = e
		}
	}
	return failed, errors.Join(errs...)
}

// spawnError is the error of a server's spawn itself (its host, ssh, the
// binary), not of this coordinator's state.
type spawnError struct{ error }

func (e spawnError) Unwrap() error { return e.error }

// errShuttingDown: a spawn refused or undone because the coordinator is
// stopping (nothing to report as a failed respawn).
var errShuttingDown = errors.New("shutting down")

// spawn starts incarnation inc of nd on host (the core chose both; at
// start-up, the next incarnation on its configured host).
func (c *Coordinator) spawn(ctx context.Context, nd *node, inc uint64, host string) error {
	c.mu.Lock()
	if c.shutting {
		c.mu.Unlock()
		return errShuttingDown
	}
	c.spawns.Add(1)
	defer c.spawns.Done()
	// A cluster that never had a view (new, or its coordinators' state
	// lost) has no ID its servers' directories could have been written
	// with: a directory of another ID takes this cluster's.
	adopt := c.view.Epoch == 0 && !c.restarting
	nd.inc, nd.host = inc, host
	nd.reported = false
	nd.hb, nd.counted = wire.Heartbeat{}, 0
	c.mu.Unlock()
	// Commit the new incarnation number before the process exists, so a
	// later leader never reuses it; a coordinator that cannot (it no
	// longer leads) spawns nothing.
	if err := c.saveState(); err != nil {
		return fmt.Errorf("server %d: incarnation %d not committed: %w", nd.id, inc, err)
	}
	c.mu.Lock()
	where := nd.spec
	where.Host = nd.host
	home := c.home
	c.mu.Unlock()
	spec := SpawnSpec{
		ID: nd.id, Servers: c.n, Incarnation: inc, Spec: where, CoordAddr: c.serversAddr, Secret: c.secret, Users: c.usersForServers(),
		ClusterID: clusterID(c.clusterSecret()), AdoptCluster: adopt,
		Dir: home, LogFile: c.opts.ServerLog, LogLevel: c.opts.ServerLevel,
		FailureTimeout: c.opts.Timing.FailureTimeout, Limits: c.limits(), Storage: c.storage(), Sched: c.schedPolicy(),
		MetricsPort: c.opts.ServerMetricsPort, TLS: c.opts.tls.serverFiles(),
	}
	for k, cs := range c.opts.Cluster.Coordinators {
		if k != c.opts.ID {
			spec.OtherCoords = append(spec.OtherCoords, cs.ServersAddr())
		}
	}
	sp := c.opts.Spawner
	if !where.Local() {
		sp = c.opts.Remote
		spec.CoordHost = c.remoteCoordHost()
	}
	p, err := sp.Spawn(ctx, spec)
	if err != nil {
		return spawnError{fmt.Errorf("server %d (%s, line %d): %w", nd.id, where.Host, nd.spec.Line, err)}
	}
	c.mu.Lock()
	if c.stopping {
		// The servers began to stop while this one was spawned (over
		// ssh, say): stopServers no longer sees it, so it must not
		// live on. It reported nothing: its log holds its data.
		c.mu.Unlock()
		err := p.Kill()
		release(p)
		c.log.Warn().Err(err).Int("node", nd.id).Uint64("inc", inc).Int("pid", p.PID()).Msg("shutting down: killed the incarnation just spawned")
		return errShuttingDown
	}
	old := nd.proc
	nd.proc, nd.procInc = p, inc
	c.mu.Unlock()
	release(old) // stop watching a replaced incarnation
	c.log.Info().Int("node", nd.id).Uint64("inc", inc).Int("pid", p.PID()).Msg("server spawned")
	// Commit its pid too: a leader taking over before the next view must
	// be able to watch it, or kill it at a fresh start (its fixed ports).
	if err := c.saveState(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			// Deposed between the two commits (stopped, say, and
			// continued after another coordinator took over). Its
			// incarnation number is committed: the leader takes the
			// process over as a respawn of its own (decide.New) —
			// killed here, it was a server the leader had taken over,
			// re-seeded and handed its shard back (a review: 7 times)
			// — unless it has replaced it: then it must not live on
			// beside the one that counts (an attack saw such a process
			// recover the live server's log). Which one, the log says
			// once this member has caught up.
			if c.replacedSince(nd.id, inc, c.opts.Timing.RaftElection) {
				c.log.Warn().Err(err).Int("node", nd.id).Uint64("inc", inc).Int("pid", p.PID()).
					Msg("no longer leading, and the leader replaced the incarnation just spawned: killing it")
				_ = p.Kill()
			} else {
				c.log.Warn().Err(err).Int("node", nd.id).Uint64("inc", inc).Int("pid", p.PID()).
					Msg("no longer leading: the incarnation just spawned is left to the leader (it takes it over, or refuses it and it exits)")
			}
			release(p) // (a follower watches nothing)
			return fmt.Errorf("server %d: spawned as this coordinator lost the lead: %w", nd.id, err)
		}
		c.log.Warn().Err(err).Int("node", nd.id).Uint64("inc", inc).Msg("pid of the new incarnation not committed")
	}
	go c.watchExit(nd, inc, p)
	return nil
}

// replacedSince reports whether the committed state, as this member
// applies it within wait, gives member id an incarnation newer than inc.
func (c *Coordinator) replacedSince(id int, inc uint64, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for c.fsm != nil {
		if st, ok := c.fsm.state(); ok && id < len(st.Nodes) && st.Nodes[id].Inc > inc {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(c.opts.Timing.Poll)
	}
	return false
}

// watchExit reports the exit of p, incarnation inc of nd, to the core,
// unless this coordinator is stopping (it stops them: no news).
func (c *Coordinator) watchExit(nd *node, inc uint64, p Process) {
	var released <-chan struct{}
	if r, ok := p.(releaser); ok {
		released = r.Released()
	}
	select {
	case <-p.Done():
	case <-released:
		return // another incarnation or another leader watches it now
	}
	c.sawExit(nd, inc)
	c.mu.Lock()
	shutting := c.shutting
	c.mu.Unlock()
	if !shutting {
		c.log.Error().Int("node", nd.id).Uint64("inc", inc).Int("pid", p.PID()).Msg("server process exited")
		c.sendEvent(decide.ProcessExited{ID: nd.id, Inc: inc})
	}
}

// waitRegistered waits until every server reported, from begun on. Past
// Timing.Start it waits on, up to Timing.Recover (ctx's limit), while
// the missing servers' processes run: a server reports once it has
// rebuilt its tables from its log, and a large log takes a while. A
// server that exits during start-up, or cannot be spawned (unspawned:
// the errors of spawnAll), is started again startRetries times, backing
// off. At a restart from the servers' logs (mayStartWithout) one that
// still does not start is given up: without lists those, and the cluster
// starts without them (canStartWithout), as a running cluster fails a
// server over; the core then respawns them. Otherwise the start fails.
func (c *Coordinator) waitRegistered(ctx context.Context, begun time.Time, unspawned map[int]error) (without map[int]bool, err error) {
	tries := make([]int, len(c.nodes))
	without = map[int]bool{}
	due := map[int]time.Time{} // servers to start again, and when (each backs off on its own)
	degrade := c.mayStartWithout()
	// failed takes a failed start of server id: it is tried again after
	// a back-off, or given up, or the start fails.
	failed := func(id int, why error) error {
		var se spawnError
		if !errors.As(why, &se) && !errors.Is(why, errExitedAtStart) {
			return why // not the server's own failure: this coordinator's (no longer leading)
		}
		if tries[id] >= startRetries {
			if !degrade {
				return why
			}
			without[id] = true
			c.log.Error().Err(why).Int("node", id).Int("tries", tries[id]+1).
				Msg("restart: this server does not start; the cluster starts without it")
			return nil
		}
		tries[id]++
		c.log.Warn().Err(why).Int("node", id).Int("attempt", tries[id]).Msg("server did not start; starting it again")
		due[id] = time.Now().Add(c.opts.Timing.RespawnMin << (tries[id] - 1))
		return nil
	}
	for _, id := range slices.Sorted(maps.Keys(unspawned)) {
		if err := failed(id, unspawned[id]); err != nil {
			return nil, err
		}
	}
	warned := false
	for {
		c.mu.Lock()
		missing := []int{}
		for _, nd := range c.nodes {
			if !nd.reported && !without[nd.id] {
				missing = append(missing, nd.id)
			}
		}
		var exited []int
		for _, nd := range c.nodes {
			if _, waits := due[nd.id]; nd.proc != nil && !without[nd.id] && !waits {
				select {
				case <-nd.proc.Done():
					exited = append(exited, nd.id)
				default:
				}
			}
		}
		c.mu.Unlock()
		if len(missing) == 0 {
			if len(without) > 0 {
				if err := c.canStartWithout(without); err != nil {
					return nil, err
				}
			}
			return without, nil
		}
		for _, id := range exited {
			nd := c.nodes[id]
			c.mu.Lock()
			reported, proc := nd.reported, nd.proc
			c.mu.Unlock()
			// A fixed port may still be held a moment by an incarnation
			// of an interrupted start (it exits when its heartbeat is
			// refused): try again a few times, backing off.
			if ec, ok := proc.(interface{ ExitCode() int }); ok && !reported && ec.ExitCode() == serverRefused {
				where := ""
				if d := c.storage().ServerDir(id); d != "" {
					where = " " + d
				}
				return nil, refusedDir{fmt.Errorf("server %d (%s, line %d) refused its data directory%s (exit status %d, not retried): another server's or cluster's, not empty and not a server's, or not a directory; the server's own error, in the log, says which",
					id, nd.host, nd.spec.Line, where, serverRefused)}
			}
			why := fmt.Errorf("server %d (%s, line %d) %w (port in use? data_dir unusable? see the server's own error)", id, nd.host, nd.spec.Line, errExitedAtStart)
			if reported {
				return nil, why
			}
			if err := failed(id, why); err != nil {
				return nil, err
			}
		}
		next := time.Now().Add(c.opts.Timing.Poll)
		for _, id := range slices.Sorted(maps.Keys(due)) {
			at := due[id]
			if time.Now().Before(at) {
				next = minTime(next, at)
				continue
			}
			delete(due, id)
			nd := c.nodes[id]
			c.mu.Lock()
			inc, host := nd.inc+1, nd.host
			c.mu.Unlock()
			c.met.spawnedAtStart()
			if err := c.spawn(ctx, nd, inc, host); err != nil {
				if err := failed(id, err); err != nil {
					return nil, err
				}
			}
		}
		if len(exited) > 0 {
			continue
		}
		if !warned && time.Since(begun) > c.opts.Timing.Start {
			warned = true
			c.log.Warn().Ints("nodes", missing).Dur("waited", time.Since(begun).Round(time.Millisecond)).Dur("limit", c.opts.Timing.Recover).
				Msg("servers not reported yet, their processes running (rebuilding their tables from large logs?): waiting on")
		}
		select {
		case <-c.regCh:
		case <-time.After(time.Until(next)):
		case <-ctx.Done():
			return nil, fmt.Errorf("servers %v did not report within %s (see their logs)", missing, time.Since(begun).Round(time.Second))
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// errExitedAtStart: a server exited before it reported.
var errExitedAtStart = errors.New("exited during start-up")

// mayStartWithout reports whether the cluster may start without a server
// that does not start: only at a restart from the servers' logs, where
// the record of current copies says which copies may lead. A fresh
// cluster needs all of its servers (a config mistake fails at once).
func (c *Coordinator) mayStartWithout() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restarting && c.storage().ServerDir(0) != ""
}

// canStartWithout checks that a server not in without started: the
// cluster then starts without the others. Each shard they hold leads
// from its other copy if that one is current (decide.Current: it holds
// every acknowledged write) and reported by its log; a shard with no such
// copy is unavailable (SPEC §4.7) until one of its current copies comes
// back, and every other shard serves.
func (c *Coordinator) canStartWithout(without map[int]bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := slices.Sorted(maps.Keys(without))
	if len(without) == len(c.nodes) {
		return fmt.Errorf("no server starts (servers %v; see their errors above)", ids)
	}
	durable := c.durableLocked()
	var lost []int
	for s := 0; s < c.n; s++ {
		ok := false
		for _, h := range []int{s, (s + 1) % c.n} {
			_, has := durable[h][s]
			ok = ok || has && !without[h] && c.current.Has(c.n, s, h)
		}
		if !ok {
			lost = append(lost, s)
		}
	}
	ev := c.log.Warn()
	if len(lost) > 0 {
		ev = c.log.Error().Ints("unavailable_shards", lost)
	}
	ev.Ints("without", ids).Msg("restart: starting without the servers that do not start (a shard they hold leads from its other copy if that one is current, else it is unavailable until a current copy comes back); they are respawned as after a failure")
	return nil
}

// publishInitialView builds the first view (server i primary of shard i,
// its successor secondary, unless the servers' logs say otherwise:
// initialPlacement), pushes it to every server and waits for all of them
// to confirm their replication links are up and their secondaries' copies
// whole. A server whose log fails meanwhile (a full disk: its copy was to
// be re-seeded) is left out of a new first view when no shard needs its
// copy to lead, as a running cluster fails it over: the cluster starts
// without it, and the core respawns it (TestRestartWithOneDiskFull; the
// start waited for the whole re-seeding limit, then started again, and
// gave up after four tries).
func (c *Coordinator) publishInitialView(ctx context.Context, without map[int]bool) error {
	out := maps.Clone(without) // members left out: they did not start, or their logs failed
	for {
		v, err := c.commitInitialView(out, without)
		if err != nil {
			return err
		}
		pctx, cancel := context.WithCancel(ctx)
		// (Cancelled once a member that may be left out of v reports a
		// failed log.)
		go poll.CancelWhen(pctx, cancel, c.opts.Timing.Poll, func() bool { return len(c.failedLogs(v)) > 0 })
		// A secondary whose recovered copy differs from its primary's is
		// re-seeded before its server answers: give it the time a
		// re-seeding may take.
		errs := c.pushViewWithin(pctx, v, c.opts.Timing.SeedLimit)
		cancel()
		if len(errs) == 0 {
			return nil
		}
		left := c.failedLogs(v)
		if len(left) == 0 {
			return errors.Join(errs...)
		}
		for _, i := range left {
			out[i] = true
			c.log.Warn().Int("node", i).Msg("start: this server's log failed (disk error); the cluster starts without it and respawns it")
			// Killed now, as a failover would: a primary re-seeding its
			// copy waits on it (it acknowledges nothing) and would hold
			// the next first view for the whole re-seeding limit.
			c.mu.Lock()
			p := c.nodes[i].proc
			c.mu.Unlock()
			if p != nil {
				if err := p.Kill(); err != nil {
					c.log.Warn().Err(err).Int("node", i).Msg("cannot kill the server left out")
				}
			}
		}
	}
}

// commitInitialView builds the first view without the members of out
// (down, and no shard's secondary) and commits it.
func (c *Coordinator) commitInitialView(out, gone map[int]bool) (wire.View, error) {
	c.mu.Lock()
	// The servers' session TTL travels in the view, so clients stop
	// retrying a write before its session could expire.
	v := wire.View{Epoch: c.nextEpochLocked(), SessionTTL: c.limits().WithDefaults().SessionTTL}
	for _, nd := range c.nodes {
		m := wire.Member{
			ID: uint32(nd.id), Incarnation: nd.inc, State: wire.StateServing, PID: uint32(pidOf(nd.proc)),
			Host: nd.host, Addr: nd.hb.Addr, PeerAddr: nd.hb.PeerAddr, CtlAddr: nd.hb.CtlAddr,
		}
		if out[nd.id] {
			m.State = wire.StateDown
		}
		v.Servers = append(v.Servers, m)
	}
	durable := c.durableLocked()
	alone := c.aloneLocked(gone)
	v.Shards = initialPlacement(c.n, durable, c.restarting && !c.noLogs, out, c.current, gone, alone)
	c.firstDurable = durable
	c.narrow = awaited(c.n, alone, gone)
	cur := narrowCurrent(c.current, v.Shards, c.narrow) // as committed with v (nextCurrentLocked)
	for s, p := range v.Shards {
		if p.Primary < 0 {
			if h := waitsFor(c.n, s, cur, gone); h >= 0 {
				c.log.Error().Int("shard", s).Int("waits_for", h).Msg("restart: the server whose copy of this shard holds every acknowledged write did not start; a copy left may miss some (a secondary's log is written lazily; or its server was out while the other acknowledged writes alone): the shard is unavailable until that server is back")
				continue
			}
			var stale []int
			for _, h := range []int{s, (s + 1) % c.n} {
				if _, ok := durable[h][s]; ok && !c.current.Has(c.n, s, h) && !slices.Contains(stale, h) {
					stale = append(stale, h)
				}
			}
			if len(stale) > 0 {
				c.log.Error().Int("shard", s).Ints("stale_copies", stale).Msg("restart: the copies of this shard that held every acknowledged write are lost (data directory lost or damaged?); the copy left is stale (its server was out while the other acknowledged writes alone) and is never served: the shard is unavailable")
				continue
			}
			if c.storage().ServerDir(s) == "" {
				c.log.Error().Int("shard", s).Msg("restart: this cluster ran with logs, and data_dir none reads none: the shard is unavailable (never served empty); with data_dir as it was a restart brings it back (a new, empty cluster needs a new -d directory)")
				continue
			}
			c.log.Error().Int("shard", s).Str("data_dir", c.storage().DataDir).Strs("looked_in", []string{c.storage().ServerDir(s), c.storage().ServerDir((s + 1) % c.n)}).
				Msg("restart: no log holds a copy of this shard (data_dir changed since the cluster last ran, or both data directories lost?): it is unavailable; with data_dir as it was (or the directories moved to the new one) a restart brings it back")
			continue
		}
		if p.Primary != int32(s) {
			ev := c.log.Warn()
			msg := "restart: the shard's most complete copy is its secondary's; it leads the shard"
			if led := len(c.lastView.Shards) == c.n && c.lastView.Shards[s].Primary == p.Primary; !led && (!c.lastStopped || slices.Contains(c.lastUnstopped, int(p.Primary))) && c.storage().FsyncSecondary != "yes" {
				// After a kill the log of a copy that was not the shard's
				// primary may miss its last records (a secondary's are
				// written lazily): say so where it may have cost writes.
				ev = c.log.Error()
				msg += " (after a kill its log may miss the writes of about the last second: fsync_secondary was off)"
			}
			ev.Int("shard", s).Int32("primary", p.Primary).Uint64("its_index", durable[p.Primary][s]).
				Uint64("home_index", durable[s][s]).Msg(msg)
		}
	}
	c.mu.Unlock()
	nv, err := c.commitView(v) // committed before any server or client sees it
	if err == nil {
		c.met.published("start")
	}
	return nv, err
}

// waitsFor is a server of gone whose copy of shard s is current, if s is
// unavailable for want of it (-1 otherwise).
func waitsFor(n, s int, current decide.Current, gone map[int]bool) int {
	for _, h := range []int{s, (s + 1) % n} {
		if gone[h] && current.Has(n, s, h) {
			return h
		}
	}
	return -1
}

// awaited is, per shard, the copies of alone whose servers are in gone
// (did not start): those a shard left unavailable by a start waits for.
func awaited(n int, alone decide.Current, gone map[int]bool) decide.Current {
	if alone == nil {
		return nil
	}
	out := make(decide.Current, len(alone))
	for s := range alone {
		for _, h := range []int{s, (s + 1) % n} {
			if gone[h] {
				out[s] |= alone[s] & decide.Bit(n, s, h)
			}
		}
	}
	return out
}

// narrowCurrent is the record of current copies cur once a start's first
// view placed shards: a shard it leaves unavailable keeps only the copies
// awaited names, when it names any (copies whose logs hold every
// acknowledged write, aloneLocked, on servers that did not start).
// Nothing is acknowledged while the shard is unavailable, so they still
// do at the next start, though that start's last view shows no primary to
// judge by: a second restart without the other server lets the copy that
// led the shard when it was last served lead it again. A copy whose
// server started is never the one kept this way: it reports its log, and
// one that holds no copy (its directory lost) must not leave the other as
// the shard's only hope.
func narrowCurrent(cur decide.Current, shards []wire.Placement, awaited decide.Current) decide.Current {
	if awaited == nil || len(cur) != len(shards) || len(awaited) != len(shards) {
		return cur
	}
	out := slices.Clone(cur)
	for s, p := range shards {
		if p.Primary < 0 && awaited[s] != 0 && out[s]&awaited[s] != 0 {
			out[s] &= awaited[s]
		}
	}
	return out
}

// aloneLocked is the record of the copies whose logs hold every
// acknowledged write, for a start without the servers of gone (c.mu
// held), per shard by the last committed view:
//   - served then, after an orderly stop: its current copies (each log
//     synced at the stop);
//   - served then, after a kill: its primary's (a secondary's records are
//     written lazily: its log may miss the last writes it acknowledged);
//   - not served then (unavailable): a sole current copy (it was the
//     primary that led alone when its partner left the record), else
//     none: two copies current then may differ by such a lazy tail.
//
// nil: any (no server missing).
func (c *Coordinator) aloneLocked(gone map[int]bool) decide.Current {
	if len(gone) == 0 {
		return nil
	}
	alone := make(decide.Current, c.n)
	for s := range alone {
		cur := decide.Both
		if s < len(c.current) {
			cur = c.current[s]
		}
		var p int32 = -1
		if len(c.lastView.Shards) == c.n {
			p = c.lastView.Shards[s].Primary
		}
		switch {
		case p >= 0 && c.lastStopped:
			alone[s] = cur
			// A server the stop found gone synced nothing at it: its
			// copy counts only if it was the primary's, as after a kill.
			for _, h := range []int{s, (s + 1) % c.n} {
				if h != int(p) && slices.Contains(c.lastUnstopped, h) {
					alone[s] &^= decide.Bit(c.n, s, h)
				}
			}
		case p >= 0:
			alone[s] = cur & decide.Bit(c.n, s, int(p))
		case bits.OnesCount8(cur) == 1:
			alone[s] = cur
		}
	}
	return alone
}

// pidOf is p's pid, or 0 for none (a server that could not be spawned).
func pidOf(p Process) int {
	if p == nil {
		return 0
	}
	return p.PID()
}

// durableLocked is, per member, the log index of each complete copy its
// log reports (c.mu held).
func (c *Coordinator) durableLocked() []map[int]uint64 {
	durable := make([]map[int]uint64, c.n)
	for i, nd := range c.nodes {
		durable[i] = make(map[int]uint64, len(nd.hb.Durable))
		for _, d := range nd.hb.Durable {
			durable[i][int(d.Shard)] = d.Index
		}
	}
	return durable
}

// failedLogs lists the live members of the first view v whose current
// incarnation reports a failed log and that lead no shard of v (a copy
// that must lead is never left out: it may hold the only acknowledged
// writes).
func (c *Coordinator) failedLogs(v wire.View) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, m := range v.Servers {
		nd := c.nodes[i]
		if m.State != wire.StateServing || nd.hb.Incarnation != nd.inc || !nd.hb.Storage.Failed {
			continue
		}
		leads := false
		for _, p := range v.Shards {
			leads = leads || int(p.Primary) == i
		}
		if !leads {
			out = append(out, i)
		}
	}
	return out
}

// initialPlacement places each shard s of a cluster of n servers that
// starts (or starts again): on its home pair, server s primary and s+1
// secondary, except where durable (per server, the log index of each
// complete copy its log holds) says the secondary's copy is further on:
// then the secondary leads and the home copy is re-seeded from it. A
// copy a log does not report (none, or a re-seeding that did not finish)
// is never chosen over one it does. On a restart of a cluster that ran
// before with logs (restart), a shard no log reports a copy of has lost
// both (every copy, even an empty one, is in its server's log): it is
// unavailable, never served empty. A copy outside current (it misses
// writes the other copy acknowledged alone) never leads: a shard whose
// current copies are all lost is unavailable, never served stale. A
// server of left (out of the start: its log failed) holds no shard; a
// shard whose further copy is its copy is unavailable, never served from
// the copy behind.
// A server of gone (did not start: a subset of left) reported nothing:
// a copy leads alone beside it only if alone has it (nil: any).
func initialPlacement(n int, durable []map[int]uint64, restart bool, left map[int]bool, current decide.Current, gone map[int]bool, alone decide.Current) []wire.Placement {
	out := make([]wire.Placement, n)
	for s := range out {
		sec := (s + 1) % n
		out[s] = wire.Placement{Primary: int32(s), Secondary: int32(sec)}
		if n == 1 {
			out[s].Secondary = -1
			continue
		}
		// The index of h's copy of s, if it may lead.
		leader := func(h int32) (uint64, bool) {
			i, ok := durable[h][s]
			return i, ok && current.Has(n, s, int(h))
		}
		_, hAny := durable[s][s]
		_, oAny := durable[sec][s]
		home, hok := leader(int32(s))
		other, ook := leader(int32(sec))
		switch {
		case ook && (!hok || other > home):
			out[s] = wire.Placement{Primary: int32(sec), Secondary: int32(s)}
		case !hok && !ook && (restart || hAny || oAny):
			out[s] = wire.Placement{Primary: -1, Secondary: -1}
		}
		p := out[s] // (both -1, or both set: n > 1)
		if p.Primary >= 0 && left[int(p.Primary)] {
			// The other copy leads if it is as far on (a copy of a
			// server left out never gets ahead of the one it was
			// following: only a tie, which the home copy wins).
			pi, pok := leader(p.Primary)
			oi, ook := leader(p.Secondary)
			if !left[int(p.Secondary)] && (ook && (!pok || oi >= pi) || !pok && !ook && !restart) {
				p = wire.Placement{Primary: p.Secondary, Secondary: -1}
			} else {
				p = wire.Placement{Primary: -1, Secondary: -1}
			}
		}
		if p.Secondary >= 0 && left[int(p.Secondary)] {
			p.Secondary = -1
		}
		if h := int(p.Primary); h >= 0 && gone[partnerOf(n, s, h)] && !alone.Has(n, s, h) {
			// Its partner did not start (its log unread): only a copy
			// whose log holds every acknowledged write leads alone.
			p = wire.Placement{Primary: -1, Secondary: -1}
		}
		out[s] = p
	}
	return out
}

// partnerOf is the holder of shard s of n that is not h.
func partnerOf(n, s, h int) int {
	if h == s {
		return (s + 1) % n
	}
	return s
}

// pushViewWithin sends v to every live member in parallel, each given
// timeout to apply it, and waits for all answers; it returns the errors of
// those that did not apply it.
func (c *Coordinator) pushViewWithin(ctx context.Context, v wire.View, timeout time.Duration) []error {
	enc := wire.AppendView(nil, &v)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, m := range v.Servers {
		if m.State == wire.StateDown || m.State == wire.StateDead {
			continue
		}
		wg.Add(1)
		go func(m wire.Member) {
			defer wg.Done()
			nd := c.nodes[m.ID]
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			ans, err := c.control(pctx, nd, &wire.Frame{Op: wire.OpSetView, Epoch: v.Epoch, Value: enc})
			if err = replyErr(ans, err); err == nil {
				c.viewCounts(int(m.ID), m.Incarnation, v.Epoch, ans.Value)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("server %d refused view %d: %w", m.ID, v.Epoch, err))
				mu.Unlock()
			}
		}(m)
	}
	wg.Wait()
	return errs
}

// heartbeat records a server's report. It reports whether the server's
// lease may be renewed: never for an incarnation declared failed or
// replaced (from the moment of the core's decision, before its view is
// published: hole 3), so a cut-off or frozen primary stops serving on its
// own. Runs on the servers port's event loop: the actions the core
// returns are started in goroutines.
func (c *Coordinator) heartbeat(hb wire.Heartbeat) wire.Status {
	now := time.Now()
	c.met.heartbeat()
	c.mu.Lock()
	if int(hb.ID) >= len(c.nodes) {
		c.mu.Unlock()
		return wire.StatusStaleEpoch
	}
	nd := c.nodes[hb.ID]
	l := c.ld
	var acts []decide.Action
	if c.core == nil {
		// Start-up, or a takeover before the core has the records: only
		// the newest incarnation, and after a takeover only a live member
		// of the committed view, is heard.
		if hb.Incarnation != nd.inc || (c.readopt && !liveMember(c.view, int(hb.ID), hb.Incarnation) && !respawnedSince(c.view, int(hb.ID), hb.Incarnation)) {
			c.mu.Unlock()
			return wire.StatusStaleEpoch
		}
		if c.readopt && !liveMember(c.view, int(hb.ID), hb.Incarnation) {
			// Respawned by the previous leader, not in the view yet: the
			// core takes it over as a spawn of its own (decide.New), and
			// hears it from its start. Told to exit, it was respawned
			// again (a chaos review).
			c.mu.Unlock()
			return wire.StatusUnavailable
		}
		if !nd.reported {
			nd.reported = true
			select {
			case c.regCh <- struct{}{}:
			default:
			}
		}
		nd.unheard = time.Time{}
	} else {
		if !c.shutting {
			// (Stopping: nothing more is decided, a lease is still given.)
			acts = c.core.Step(decide.Heartbeat{Now: now, HB: hb, Links: coreLinks(hb.Links)})
		}
		if !c.core.Lease(int(hb.ID), hb.Incarnation) {
			c.mu.Unlock()
			c.execute(l, acts)
			return wire.StatusStaleEpoch // an old or condemned incarnation
		}
	}
	if hb.Incarnation == nd.hb.Incarnation && hb.Epoch < nd.counted {
		// Gathered before the server applied the view whose push's
		// answer counted its keys: those counts are of the roles shown.
		hb.PrimaryKeys, hb.SecondaryKeys = nd.hb.PrimaryKeys, nd.hb.SecondaryKeys
	}
	nd.hb = hb
	nd.lastSeen = now
	// A leader that has not heard from a quorum lately (it was cut off,
	// or stopped and resumed) may have been replaced by one that fails
	// this server meanwhile, so it renews no lease (the server does not
	// exit: it is not condemned). A single coordinator has no rival.
	renew := !c.group() || c.rn == nil || time.Since(c.verified) < c.opts.Timing.RaftLeaderLease
	c.mu.Unlock()
	c.execute(l, acts)
	if !renew {
		return wire.StatusUnavailable
	}
	return wire.StatusOK
}

// respawnedSince reports whether inc is a newer incarnation of member id
// than v's, which has it down: a respawn since v.
func respawnedSince(v wire.View, id int, inc uint64) bool {
	return id >= 0 && id < len(v.Servers) && inc > v.Servers[id].Incarnation &&
		v.Servers[id].State != wire.StateServing && v.Servers[id].State != wire.StateReseeding
}

// liveMember reports whether incarnation inc of member id serves (or
// re-seeds) in v.
func liveMember(v wire.View, id int, inc uint64) bool {
	if id < 0 || id >= len(v.Servers) {
		return false
	}
	return v.Servers[id].Incarnation == inc && live(v.Servers[id])
}

// coreLinks are a heartbeat's link reports as the core takes them: a
// primary's replication links that have not answered for a while (hole
// 9; the core fails the secondary once the stall passes the failure
// timeout).
func coreLinks(ls []wire.LinkHealth) []decide.Link {
	var out []decide.Link
	for _, l := range ls {
		out = append(out, decide.Link{Shard: int(l.Shard), Secondary: int(l.Secondary), Incarnation: l.Incarnation, DownFor: l.Stalled})
	}
	return out
}

// Shutdown stops this coordinator. A single coordinator first orders
// every server to dump its tables and exit (killing any that do not
// finish in time) and commits that the cluster stopped in order; a
// member of a group stops only itself (the others lead on), handing its
// leadership over first.
func (c *Coordinator) Shutdown(ctx context.Context) error {
	defer c.closeMetrics()
	if c.group() {
		c.stopLeading()
		if c.rn != nil {
			c.mu.Lock()
			lead := c.leading
			c.mu.Unlock()
			if lead {
				// A stop of the whole cluster this leader is carrying out
				// (its commit closes stopped as it applies) first tells
				// the others.
				c.mu.Lock()
				done := c.stopClusterDone
				c.mu.Unlock()
				if done != nil {
					select {
					case <-done:
					case <-ctx.Done():
					}
				}
				_ = c.rn.r.LeadershipTransfer().Error()
			}
			c.rn.close()
		}
		c.closeCtl()
		return nil
	}
	err := c.stopServers(ctx)
	if err == nil && c.store != nil {
		// The next start spawns a fresh cluster (the servers' dumps stay
		// where they are), with incarnations and epochs that keep growing.
		if serr := c.saveStop(true); serr != nil {
			c.log.Warn().Err(serr).Msg("cannot commit the orderly stop; the next start re-adopts (and respawns) the servers")
		}
	}
	c.stopLeading()
	if c.rn != nil {
		c.rn.close()
	}
	c.closeCtl()
	return err
}

// Stopped is closed once the group committed an orderly stop of the
// whole cluster (StopCluster on its leader): each coordinator then exits.
func (c *Coordinator) Stopped() <-chan struct{} { return c.stopped }

// StopCluster stops the whole cluster from the leader of a group: every
// server dumps its tables and exits, then the orderly stop is committed
// and every coordinator exits. A single coordinator does the same.
func (c *Coordinator) StopCluster(ctx context.Context) error {
	c.mu.Lock()
	lead := c.leading
	done := c.stopClusterDone
	if lead && done == nil {
		done = make(chan struct{})
		c.stopClusterDone = done
		defer close(done)
	}
	c.mu.Unlock()
	if !lead {
		return errors.New("not the leader")
	}
	err := c.stopServers(ctx)
	serr := c.saveStop(err == nil)
	c.log.Info().AnErr("servers", err).AnErr("commit", serr).Bool("stopped", err == nil).Msg("cluster stopped")
	if serr != nil && err == nil {
		err = serr
	} else if serr == nil && c.group() {
		c.stopOthers()
	}
	c.stoppedOnce.Do(func() { close(c.stopped) })
	return err
}

// saveStop commits the state once the servers were stopped: stopped
// says whether in order (the next start spawns a fresh cluster from
// their dumps and logs). An orderly stop is the last state committed: a
// decision still being carried out (a view, a respawn) commits nothing
// after it (saveState), or the next start would re-adopt servers that
// are gone.
func (c *Coordinator) saveStop(stopped bool) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if c.final {
		// An orderly stop is committed already (StopCluster, then the
		// exit's Shutdown): the second stop finds every server gone, and
		// its record of them as missed must not replace the first's (a
		// review: a start after bin/client shutdown took every copy that
		// was a secondary's for unsynced).
		return nil
	}
	c.mu.Lock()
	st := c.stateLocked()
	if stopped {
		st.Unstopped = slices.Clone(c.unstopped)
	}
	c.mu.Unlock()
	st.Stopped = stopped
	err := c.store.Save(st)
	if err == nil && stopped {
		c.final = true
	}
	return err
}

// stopOthers tells the other coordinators of the group that the cluster
// stopped (SHUTDOWN on their servers port, after HELLO with the secret):
// a follower may never learn that the stop committed (once the leader
// exits, the others may lack a quorum to elect anybody), and must not
// wait for a leader that never comes. One that cannot be reached learns
// it from the log when it next has a leader.
func (c *Coordinator) stopOthers() {
	stop, _ := c.fsm.lastApplied() // (the stop: committed and applied here)
	var wg sync.WaitGroup
	for k, cs := range c.opts.Cluster.Coordinators {
		if k == c.opts.ID {
			continue
		}
		wg.Add(1)
		go func(k int, addr string) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timing.Dial)
			defer cancel()
			cc, err := c.dialPeer(ctx, addr)
			if err == nil {
				err = replyErr(cc.roundTrip(ctx, &wire.Frame{Op: wire.OpShutdown, Epoch: stop, Value: []byte(wire.ShutdownConfirm)}))
				cc.close()
			}
			switch {
			case err == nil:
			case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
				// (The order sent: it exits at once, before its answer
				// is written, a review read a warning for a delivery.)
				c.log.Info().Err(err).Int("coordinator", k).Msg("a coordinator closed the link as it got the order to stop")
			default:
				c.log.Warn().Err(err).Int("coordinator", k).Msg("cannot tell a coordinator that the cluster stopped")
			}
		}(k, cs.ServersAddr())
	}
	wg.Wait()
}

// stopLeading ends this coordinator's work as a leader for good.
func (c *Coordinator) stopLeading() {
	c.mu.Lock()
	c.shutting = true // (no spawn starts from here on)
	c.mu.Unlock()
	// A spawn under way ends first, its pid committed for the next
	// leader: cut (its ssh killed), it could leave a server running on
	// its host that no leader knows the pid of.
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timing.ShutdownWait)
	if !waitGroup(ctx, &c.spawns) {
		c.log.Warn().Msg("a server spawn still under way as this coordinator stops leading: it is cut short")
	}
	cancel()
	c.mu.Lock()
	if c.leadCancel != nil {
		c.leadCancel()
		c.leadCancel = nil
	}
	c.mu.Unlock()
}

func (c *Coordinator) closeCtl() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nd := range c.nodes {
		for _, l := range []**ctlConn{&nd.ctl, &nd.counts} {
			if *l != nil {
				(*l).close()
				*l = nil
			}
		}
	}
}

// stopServers orders every server to dump its tables and exit and waits
// for them, killing any that do not finish in time.
func (c *Coordinator) stopServers(ctx context.Context) error {
	c.mu.Lock()
	c.shutting, c.stopping = true, true
	nodes := append([]*node(nil), c.nodes...)
	c.mu.Unlock()
	start := time.Now()
	// A takeover that did not adopt the servers leaves them unknown:
	// those known are stopped, and the stop is not in order (not
	// committed as one: the next leader re-adopts them).
	adopted := c.waitAdopted(ctx)
	// A server dumping heartbeats on, and is waited for up to DumpWait
	// (a large table takes a while: 2.5M keys cut off at a ShutdownWait
	// of 1 s left half a dump); one silent is killed (watchSilence).
	dumpCtx, cancelDump := context.WithTimeout(ctx, c.opts.Timing.DumpWait)
	defer cancelDump()
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timing.ShutdownWait)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes)+1)
	// missed: the servers this stop does not stop in order (gone before
	// it reached them, or still starting): it syncs no log of theirs.
	missed := make([]bool, len(nodes))
	defer func() {
		var ids []int
		for i, m := range missed {
			if m {
				ids = append(ids, nodes[i].id)
			}
		}
		c.mu.Lock()
		c.unstopped = ids
		c.mu.Unlock()
	}()
	if !adopted {
		errs[len(nodes)] = errors.New("the takeover under way did not adopt the running servers: they were not stopped")
	}
	for i, nd := range nodes {
		c.mu.Lock()
		p := nd.proc
		c.mu.Unlock()
		if p == nil {
			missed[i] = true
			continue
		}
		select {
		case <-p.Done():
			missed[i] = true
			continue // gone already
		default:
		}
		wg.Add(1)
		go func(i int, nd *node, p Process) {
			defer wg.Done()
			wait := c.opts.Timing.ServerExit
			octx, stopWatch := c.watchSilence(dumpCtx, nd, start, p)
			ans, err := c.control(octx, nd, &wire.Frame{Op: wire.OpShutdown})
			silent := context.Cause(octx)
			stopWatch()
			unreached := err != nil // (not an answer: a failed dump is one)
			err = replyErr(ans, err)
			if errors.Is(silent, errSilentStop) {
				// Stopped (SIGSTOP) or hung: its dump would never come,
				// and the stop waited ShutdownWait and ServerExit for it
				// (7 s by default). Killed as a silent server is while
				// the cluster runs; its log holds its data, and its
				// neighbours' dumps its two shards.
				c.log.Warn().Int("node", nd.id).Dur("silent_for", c.opts.Timing.StopSilence).Msg("server silent during the stop (stopped or hung): killed, not dumped")
				wait, err = 0, fmt.Errorf("silent for %s (stopped or hung): killed, not dumped", c.opts.Timing.StopSilence)
			}
			if errors.Is(err, errNotReported) {
				// Still starting (rebuilding its tables from its log, say):
				// it has nothing to dump that its log does not hold.
				c.log.Warn().Int("node", nd.id).Msg("server not reported yet (still starting): killed, not dumped; its log holds its data")
				wait, err = 0, nil
				missed[i] = true
			}
			select {
			case <-p.Done():
				if err != nil && unreached {
					// It had exited (killed just before the stop, its
					// exit not yet seen): nothing to dump; its copies
					// are the other servers' and its log's.
					c.log.Warn().Err(err).Int("node", nd.id).Msg("server had exited before the stop reached it: not dumped; its secondary copies count as after a kill at the next start")
					err = nil
					missed[i] = true
				}
			case <-time.After(wait):
				_ = p.Kill()
				select {
				case <-p.Done():
				case <-time.After(c.opts.Timing.KillWait): // an unreachable host
				}
			}
			if err != nil {
				errs[i] = fmt.Errorf("server %d: shutdown: %w", nd.id, err)
			}
		}(i, nd, p)
	}
	wg.Wait()
	// A spawn under way (over ssh, say) kills its incarnation once it
	// has it (spawn): bin/coord must not exit before, or that server
	// would run on with nobody to stop it.
	if !waitGroup(ctx, &c.spawns) {
		c.log.Warn().Msg("a server spawn still under way at the end of the shutdown: that server may live on")
	}
	c.log.Info().Float64("took_ms", millis(time.Since(start))).Msg("servers stopped")
	return errors.Join(errs...)
}

// errSilentStop ends an order to stop a server that stopped
// heartbeating (watchSilence).
var errSilentStop = errors.New("server silent during the stop")

// watchSilence gives ctx's order to nd a context that ends with cause
// errSilentStop once nd has not heartbeated for Timing.StopSilence,
// counted from the stop's start at the earliest (a coordinator that was
// itself held up finds every report old), and p, where it runs on this
// host, has used no CPU time for as long either: a server dumping a
// large table under load heartbeats late (gaps of 100-400 ms were seen
// at -t 100ms with 3 servers on 2 CPUs) but works on, and a healthy
// server was killed halfway through its dump (a review); one stopped
// (SIGSTOP) or hung uses none. stop ends the watch.
func (c *Coordinator) watchSilence(ctx context.Context, nd *node, start time.Time, p Process) (octx context.Context, stop func()) {
	octx, cancel := context.WithCancelCause(ctx)
	cpu, local := cpuTime(p)
	busy := start // when p was last seen using CPU time
	go poll.CancelWhen(octx, func() { cancel(errSilentStop) }, c.opts.Timing.Poll, func() bool {
		if local {
			if now, ok := cpuTime(p); ok && now != cpu {
				cpu, busy = now, time.Now()
			}
		}
		c.mu.Lock()
		last := nd.lastSeen
		c.mu.Unlock()
		return time.Since(latest(last, latest(busy, start))) > c.opts.Timing.StopSilence
	})
	return octx, func() { cancel(nil) }
}

// cpuTime is the CPU time p has used (utime+stime of /proc/PID/stat, in
// clock ticks), and false when p does not run on this host or it cannot
// be read.
func cpuTime(p Process) (uint64, bool) {
	switch p.(type) {
	case *localProc, *pidProc:
	default:
		return 0, false
	}
	f, ok := procStat(p.PID())
	if !ok || len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return ut + st, true
}

// latest is the later of a and b.
func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// waitAdopted waits for a takeover under way to have adopted the running
// servers: a leader just elected knows no server process until then, and
// a stop would stop none of them. It reports false when the takeover
// ended without (it failed) or did not get there within twice RaftApply
// (its Raft barrier is bounded by one).
func (c *Coordinator) waitAdopted(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*c.opts.Timing.RaftApply)
	defer cancel()
	for {
		c.mu.Lock()
		adopting, ended := c.adopting, c.tookOver
		c.mu.Unlock()
		if !adopting {
			return true
		}
		if ended {
			c.log.Warn().Msg("the takeover failed before it adopted the servers: stopping those known")
			return false
		}
		select {
		case <-ctx.Done():
			c.log.Warn().Msg("the takeover did not adopt the servers in time: stopping those known")
			return false
		case <-time.After(c.opts.Timing.Poll):
		}
	}
}

// waitGroup waits for wg within ctx and reports whether it is done.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
	}
	// (An empty group is done though the deadline passed: the wait
	// above may have chosen the deadline first.)
	select {
	case <-done:
		return true
	case <-time.After(doneGrace):
		return false
	}
}

// doneGrace is how long waitGroup gives its own goroutine to see an empty
// group done.
// timing: exception — a goroutine's wake-up, not the cluster's timing.
const doneGrace = 10 * time.Millisecond

// killSpawned kills the servers a failed start spawned.
func (c *Coordinator) killSpawned() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nd := range c.nodes {
		if nd.proc != nil {
			p := nd.proc
			go func() { _ = p.Kill() }()
		}
	}
}

func (c *Coordinator) killAll() {
	c.mu.Lock()
	c.shutting, c.stopping = true, true
	var procs []Process
	for _, nd := range c.nodes {
		if nd.proc != nil {
			procs = append(procs, nd.proc)
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.Kill()
	}
	// A spawn under way kills its own incarnation once it has it.
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timing.ShutdownWait)
	defer cancel()
	waitGroup(ctx, &c.spawns)
}

// remoteCoordHost is the address remote servers dial the coordinator at:
// the bound address when it is a specific one, else "" (the address their
// ssh connection came from).
func (c *Coordinator) remoteCoordHost() string {
	ip := net.ParseIP(c.opts.Bind)
	if ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
		return ""
	}
	return c.opts.Bind
}

// portFree reports whether port on host can be listened on now (nil).
func portFree(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}
