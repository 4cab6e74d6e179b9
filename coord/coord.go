package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"ftkv/internal/connlimit"
	"ftkv/internal/gnetlog"
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
	kick     chan struct{} // wakes the reconcile loop

	publishedAt time.Time // when the current view was published
	lastRound   time.Time // when the reconcile loop last ran
	handingBack bool      // a hand-back is under way
	// testHookPublish, when set, runs as publish starts (tests widen the
	// window between a decision and its publication with it).
	testHookPublish func()
	testHookSave    func()     // runs as saveState starts
	pending         *wire.View // being published: saved, not visible yet
	adopting        bool       // re-adopting: heartbeats are not judged yet
	spares          []string   // spare hosts not yet taken
	saveMu          sync.Mutex

	clientAddr, serversAddr string
	ports                   []*connlimit.Port
	budget                  *connlimit.Budget // queued output of both ports
}

// node is the coordinator's record of one server.
type node struct {
	id       int
	spec     ServerSpec
	host     string // where it runs: spec.Host, or a spare it moved to
	inc      uint64
	proc     Process
	hb       wire.Heartbeat
	lastSeen time.Time
	reported bool // a heartbeat of the current incarnation arrived
	missed   bool // already logged as silent
	ctl      *ctlConn

	dead      bool // the current incarnation's process has exited
	failed    bool // the current incarnation was declared failed
	spawning  bool // a respawn is under way
	backoff   time.Duration
	nextSpawn time.Time
	confirmed uint64 // highest view epoch the server confirmed
	seeding   bool   // its re-seeding is being waited for
	repushing bool   // the current view is being sent to it again
	failures  int    // respawns in a row that failed on host
}

// limits are the cluster file's client limits with the command line's
// flags over them.
func (c *Coordinator) limits() limits.Config {
	l := c.opts.Cluster.Limits
	l.Override(c.opts.LimitFlags)
	return l
}

// New validates opts and returns a coordinator ready to Start.
func New(opts Options) (*Coordinator, error) {
	if opts.Cluster == nil || len(opts.Cluster.Servers) == 0 {
		return nil, errors.New("coord: a cluster with at least one server is required")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var sb [16]byte
	_, _ = rand.Read(sb[:])
	c := &Coordinator{
		opts:   opts,
		log:    opts.Logger,
		secret: hex.EncodeToString(sb[:]),
		n:      len(opts.Cluster.Servers),
		regCh:  make(chan struct{}, 1),
		kick:   make(chan struct{}, 1),
	}
	c.budget = connlimit.NewBudget(c.limits().WithDefaults().OutputBudget)
	if err := c.limits().Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Cluster.Path, err)
	}
	for i, s := range opts.Cluster.Servers {
		c.nodes = append(c.nodes, &node{id: i, spec: s, host: s.Host})
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

// Start binds the servers port, spawns every server, waits until all have
// reported, wires each primary to its secondary, publishes view epoch 1 and
// then opens the client port. On error, whatever was started is stopped.
func (c *Coordinator) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timing.Start)
	defer cancel()
	// The saved secret must be in place before the servers port lets the
	// previous coordinator's servers in.
	saved, v, readopt, err := c.loadState()
	if err != nil {
		return err
	}
	if readopt {
		c.secret = saved.Secret
		// Until adopt has the nodes' records, a heartbeat of a running
		// server must not be judged (and refused) against empty ones.
		c.adopting = true
	}
	addr, err := c.listen(&serversHandler{c: c}, "servers", c.opts.ServersPort)
	if err != nil {
		return fmt.Errorf("servers port %d: %w", c.opts.ServersPort, err)
	}
	c.serversAddr = addr
	c.log.Info().Str("addr", addr).Msg("servers port listening")
	if readopt {
		c.log.Warn().Str("state", c.statePath()).Uint64("epoch", v.Epoch).Msg("previous coordinator did not shut down cleanly; re-adopting its servers")
		c.adopt(ctx, saved, v)
	} else {
		if err := c.spawnAll(ctx); err != nil {
			c.killAll()
			return err
		}
		if err := c.waitRegistered(ctx); err != nil {
			c.killAll()
			return err
		}
		if err := c.publishInitialView(ctx); err != nil {
			c.killAll()
			return err
		}
	}
	c.saveState()
	addr, err = c.listen(&clientsHandler{c: c}, "clients", c.opts.ClientPort)
	if err != nil {
		c.killAll()
		return fmt.Errorf("client port %d: %w", c.opts.ClientPort, err)
	}
	c.clientAddr = addr
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	c.log.Info().Str("addr", addr).Int("servers", c.n).Uint64("epoch", c.view.Epoch).Msg("cluster ready; client port listening")
	go c.loop()
	return nil
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

func (c *Coordinator) spawnAll(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, c.n)
	for i := range c.nodes {
		wg.Add(1)
		go func(nd *node) {
			defer wg.Done()
			errs[nd.id] = c.spawn(ctx, nd)
		}(c.nodes[i])
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Coordinator) spawn(ctx context.Context, nd *node) error {
	c.mu.Lock()
	if c.shutting {
		c.mu.Unlock()
		return errors.New("shutting down")
	}
	nd.inc++
	inc := nd.inc
	nd.reported = false
	nd.dead = false
	nd.failed = false
	nd.missed = false
	nd.hb = wire.Heartbeat{}
	c.mu.Unlock()
	// Persist the new incarnation number before the process exists, so a
	// restarted coordinator never reuses it.
	c.saveState()
	c.mu.Lock()
	where := nd.spec
	where.Host = nd.host
	c.mu.Unlock()
	spec := SpawnSpec{
		ID: nd.id, Incarnation: inc, Spec: where, CoordAddr: c.serversAddr, Secret: c.secret,
		Dir: c.opts.Dir, LogFile: c.opts.ServerLog, LogLevel: c.opts.ServerLevel,
		FailureTimeout: c.opts.Timing.FailureTimeout, Limits: c.limits(),
	}
	sp := c.opts.Spawner
	if !where.Local() {
		sp = c.opts.Remote
		spec.CoordHost = c.remoteCoordHost()
	}
	p, err := sp.Spawn(ctx, spec)
	if err != nil {
		return fmt.Errorf("server %d (%s, line %d): %w", nd.id, where.Host, nd.spec.Line, err)
	}
	c.mu.Lock()
	old := nd.proc
	nd.proc = p
	c.mu.Unlock()
	if r, ok := old.(interface{ Release() }); ok {
		r.Release() // stop watching a replaced remote incarnation
	}
	c.log.Info().Int("node", nd.id).Uint64("inc", inc).Int("pid", p.PID()).Msg("server spawned")
	go func() {
		<-p.Done()
		c.mu.Lock()
		shutting := c.shutting
		if nd.inc == inc {
			nd.dead = true
		}
		c.mu.Unlock()
		if !shutting {
			c.log.Error().Int("node", nd.id).Uint64("inc", inc).Int("pid", p.PID()).Msg("server process exited")
			c.wake()
		}
	}()
	return nil
}

func (c *Coordinator) waitRegistered(ctx context.Context) error {
	for {
		c.mu.Lock()
		missing := []int{}
		for _, nd := range c.nodes {
			if !nd.reported {
				missing = append(missing, nd.id)
			}
		}
		exited := -1
		for _, nd := range c.nodes {
			if nd.proc != nil {
				select {
				case <-nd.proc.Done():
					exited = nd.id
				default:
				}
			}
		}
		c.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		if exited >= 0 {
			nd := c.nodes[exited]
			return fmt.Errorf("server %d (%s, line %d) exited during start-up (port in use?)", exited, nd.host, nd.spec.Line)
		}
		select {
		case <-c.regCh:
		case <-time.After(c.opts.Timing.Poll):
		case <-ctx.Done():
			return fmt.Errorf("servers %v did not report within %s", missing, c.opts.Timing.Start)
		}
	}
}

// publishInitialView builds epoch 1 (server i primary of shard i, its
// successor secondary), pushes it to every server and waits for all of them
// to confirm their replication links are up.
func (c *Coordinator) publishInitialView(ctx context.Context) error {
	c.mu.Lock()
	// The servers' session TTL travels in the view, so clients stop
	// retrying a write before its session could expire.
	v := wire.View{Epoch: 1, SessionTTL: c.limits().WithDefaults().SessionTTL}
	for _, nd := range c.nodes {
		v.Servers = append(v.Servers, wire.Member{
			ID: uint32(nd.id), Incarnation: nd.inc, State: wire.StateServing, PID: uint32(nd.proc.PID()),
			Host: nd.host, Addr: nd.hb.Addr, PeerAddr: nd.hb.PeerAddr, CtlAddr: nd.hb.CtlAddr,
		})
	}
	for s := 0; s < c.n; s++ {
		p := wire.Placement{Primary: int32(s), Secondary: int32((s + 1) % c.n)}
		if c.n == 1 {
			p.Secondary = -1
		}
		v.Shards = append(v.Shards, p)
	}
	c.mu.Unlock()
	c.mu.Lock()
	c.view = v
	c.viewEnc = wire.AppendView(nil, &v)
	c.mu.Unlock()
	if errs := c.pushView(ctx, v); len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// pushView sends v to every live member in parallel and waits for all
// answers; it returns the errors of those that did not apply it.
func (c *Coordinator) pushView(ctx context.Context, v wire.View) []error {
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
			pctx, cancel := context.WithTimeout(ctx, c.opts.Timing.Control)
			defer cancel()
			err := replyErr(c.control(pctx, nd, &wire.Frame{Op: wire.OpSetView, Epoch: v.Epoch, Value: enc}))
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("server %d refused view %d: %w", m.ID, v.Epoch, err))
				mu.Unlock()
				return
			}
			c.mu.Lock()
			if nd.inc == m.Incarnation && v.Epoch > nd.confirmed {
				nd.confirmed = v.Epoch
			}
			c.mu.Unlock()
		}(m)
	}
	wg.Wait()
	return errs
}

// heartbeat records a server's report. It reports whether the server's
// lease may be renewed: never for an incarnation declared failed or
// replaced, so a cut-off or frozen primary stops serving on its own.
func (c *Coordinator) heartbeat(hb wire.Heartbeat) wire.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	if int(hb.ID) >= len(c.nodes) {
		return wire.StatusStaleEpoch
	}
	nd := c.nodes[hb.ID]
	if hb.Incarnation != nd.inc || nd.failed || nd.dead {
		return wire.StatusStaleEpoch // an old or condemned incarnation
	}
	if hb.Epoch > nd.confirmed && hb.Epoch <= c.view.Epoch {
		nd.confirmed = hb.Epoch
	}
	if nd.missed {
		c.log.Info().Int("node", nd.id).Msg("server heartbeats resumed")
	}
	nd.hb = hb
	if now := time.Now(); now.After(nd.lastSeen) {
		nd.lastSeen = now // (a re-adopted server's grace may lie ahead)
	}
	nd.missed = false
	if !nd.reported {
		nd.reported = true
		select {
		case c.regCh <- struct{}{}:
		default:
		}
		c.wake()
	}
	return wire.StatusOK
}

// Shutdown orders every server to dump its tables and exit, waits for them
// (killing any that do not finish in time) and stops the listeners.
func (c *Coordinator) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.shutting = true
	nodes := append([]*node(nil), c.nodes...)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timing.ShutdownWait)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	start := time.Now()
	for i, nd := range nodes {
		c.mu.Lock()
		skip := nd.proc == nil || nd.dead
		c.mu.Unlock()
		if skip {
			continue
		}
		wg.Add(1)
		go func(i int, nd *node) {
			defer wg.Done()
			if err := replyErr(c.control(ctx, nd, &wire.Frame{Op: wire.OpShutdown})); err != nil {
				errs[i] = fmt.Errorf("server %d: shutdown: %w", nd.id, err)
			}
			select {
			case <-nd.proc.Done():
			case <-time.After(c.opts.Timing.ServerExit):
				_ = nd.proc.Kill()
				select {
				case <-nd.proc.Done():
				case <-time.After(c.opts.Timing.KillWait): // an unreachable host
				}
			}
		}(i, nd)
	}
	wg.Wait()
	c.log.Info().Float64("took_ms", millis(time.Since(start))).Msg("servers stopped")
	if len(errs) == 0 || errors.Join(errs...) == nil {
		c.removeState()
	}
	for _, nd := range nodes {
		if nd.ctl != nil {
			nd.ctl.close()
		}
	}
	return errors.Join(errs...)
}

func (c *Coordinator) killAll() {
	c.mu.Lock()
	c.shutting = true
	c.mu.Unlock()
	for _, nd := range c.nodes {
		if nd.proc != nil {
			_ = nd.proc.Kill()
		}
	}
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
