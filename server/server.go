package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"ftkv/hashring"
	"ftkv/internal/accept"
	"ftkv/internal/auth"
	"ftkv/internal/connlimit"
	"ftkv/internal/gnetlog"
	"ftkv/internal/metrics"
	"ftkv/internal/tlsconf"
	"ftkv/internal/wal"
	"ftkv/timing"
	"ftkv/wire"
)

// Config configures a Server. Zero values mean the documented default.
type Config struct {
	ID          uint32 // server id: its index in the config file
	Incarnation uint64 // distinguishes respawns of the same id
	// Servers is the cluster's size N (0: unknown), recorded in DataDir's
	// identity: the key->shard map depends on it, so a directory written
	// by a cluster of another size is refused.
	Servers int
	// ClusterID names the cluster (from its coordinators; "": not
	// checked), recorded in DataDir's identity: a directory another
	// cluster wrote is refused, unless AdoptCluster (a coordinator that
	// has no record of its cluster: its state was new or lost) lets the
	// directory take this ID.
	ClusterID    string
	AdoptCluster bool

	BindHost      string // address to listen on (default 127.0.0.1)
	AdvertiseHost string // address peers and clients dial (default BindHost)
	ClientPort    int    // 0 = any free port
	PeerPort      int    // replication from primaries; 0 = any
	CtlPort       int    // coordinator control; 0 = any

	CoordAddr string // the coordinator's servers port, host:port (a group: all of them, comma-separated)
	// TuneGC sets the collector's headroom from the live heap (100 % for
	// small heaps down to 20 % from 64 MiB on; see gc.go).
	TuneGC bool
	Secret string // cluster secret for control and replication links
	// Users, when not empty, must authenticate on the client port (HELLO
	// with a user and password) and are served by role.
	Users *auth.Table

	DumpDir string // where shutdown dumps go (default ".")
	// DataDir holds the write-ahead log (empty: no log, nothing on disk
	// until the shutdown dumps). Fsync is its policy: "always" (default),
	// "everysec" or "no". SyncSecondary makes a secondary acknowledge a
	// write only once its own log synced it (only with "always").
	DataDir       string
	Fsync         string
	SyncSecondary bool
	// SnapshotBytes: a snapshot of the tables is taken (and the log
	// truncated behind it) once the log holds this many bytes and at least
	// as many as the last snapshot (default 64 MiB; negative: never).
	SnapshotBytes int64
	walFS         wal.FS // tests: the log's file layer (default: the OS's)
	walSegment    int64  // tests: the log's segment size (default: wal's)
	// Timing holds every duration the server waits, retries or gives up
	// after, derived from the coordinator's failure timeout (zero value:
	// timing.Default()). Its Lease is how long a primary may serve after
	// its last renewal (a heartbeat answer from the coordinator or a ping
	// answer from its secondary).
	Timing timing.Config
	Loops  int // client event loops (default: one per CPU)
	// Limits bound what clients may hold: connections, queued output,
	// requests in flight, half-sent frames, idle time.
	Limits Limits
	// MetricsPort serves Prometheus metrics at /metrics on BindHost
	// (0: any free port; negative: none). Heartbeats advertise it.
	MetricsPort int
	// TLS, when set (a certificate for role server), makes every port and
	// every link TLS (tls.go).
	TLS *tlsconf.Material

	Logger zerolog.Logger
}

func (c *Config) setDefaults() error {
	if c.BindHost == "" {
		c.BindHost = "127.0.0.1"
	}
	if c.AdvertiseHost == "" {
		c.AdvertiseHost = c.BindHost
		if c.AdvertiseHost == "0.0.0.0" || c.AdvertiseHost == "::" {
			c.AdvertiseHost = "127.0.0.1"
		}
	}
	if c.DumpDir == "" {
		c.DumpDir = "."
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = 64 << 20
	}
	if c.Timing == (timing.Config{}) {
		c.Timing = timing.Default()
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("server: limits: %w", err)
	}
	if err := c.Timing.Validate(); err != nil {
		return fmt.Errorf("server: timing: %w", err)
	}
	if c.CoordAddr == "" {
		return errors.New("server: coordinator address is required")
	}
	if c.Secret == "" {
		return errors.New("server: cluster secret is required (the coordinator passes it on the server's standard input)")
	}
	for _, p := range []int{c.ClientPort, c.PeerPort, c.CtlPort, max(c.MetricsPort, 0)} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("server: port %d out of range", p)
		}
	}
	return nil
}

// viewState is an applied view plus what this server does in it.
type viewState struct {
	v     wire.View
	me    int // index of this server in v.Servers, -1 if absent
	ring  hashring.Ring
	prims []*primary // by shard: non-nil where this server is a ready primary
}

// Server is one storage server.
type Server struct {
	cfg  Config
	log  zerolog.Logger
	tls  *serverTLS                    // nil: no TLS
	bufs atomic.Pointer[clientBuffers] // what the clients' connections hold (set by Run)

	view   atomic.Pointer[viewState]
	dd     *dedup
	report heartbeatReport // what heartbeats report besides liveness
	rss    atomic.Uint64   // resident memory, as last probed (probeLoop)

	mu      sync.Mutex // guards tables, primaries, view changes
	tables  map[int]*table
	prims   map[int]*primary
	viewMu  sync.Mutex // serialises applyView
	closing atomic.Bool

	secMu sync.Mutex // guards sec and tails (each secState has its own lock)
	sec   map[int]*secState
	tails map[int]*logTail // per shard: writes in flight when this server handed it back (handback.go)
	hwMu  sync.Mutex       // guards highWater
	// highWater: per shard, the highest log index this server used as a
	// primary or logged, in the history its copy holds.
	highWater map[int]uint64
	// linked: per shard, a primary's link was accepted since this process
	// started. The first one compares copies (peer.go, hello).
	linked map[int]bool
	// recovered: per shard, the log index of the copy recovered from the
	// log at start (offered once for a partial resync).
	recovered map[int]uint64

	// appliedEpoch is the epoch of the last view applied completely
	// (links up); heartbeats report it, so the coordinator re-sends a view
	// that failed half-way.
	appliedEpoch atomic.Uint64
	// viewSeen is the newest epoch of a view received (applied or not):
	// an older view still connecting its links gives up for it.
	viewSeen atomic.Uint64

	// coordLease: the coordinator's heartbeat answers let this server
	// serve as primary.
	coordLease *leaseTracker
	coordAddr  atomic.Pointer[string]
	coords     []string // every coordinator's servers address (-coord)
	// coordTerm is the newest Raft term of a SETCOORD obeyed; an order
	// from an older term (a deposed leader's) is refused (control.go).
	coordTerm atomic.Uint64
	coordMu   sync.Mutex // orders one SETCOORD's check and move after another's

	addrs struct {
		client, peer, ctl, metrics string
	}
	met          *serverMetrics    // metrics.go
	metricsLn    *metrics.Listener // nil when off
	penv         *primaryEnv       // given to every primary
	gate         *auth.Gate        // client authentication (nil: no users)
	dur          *durable          // the write-ahead log (nil without DataDir)
	dirLock      *os.File          // the data directory's lock (dirlock.go); set in New
	lockMu       sync.Mutex        // dirLock's use (checkDataDir) against its close
	unlocked     bool              // dirLock closed (under lockMu)
	engines      []gnet.Engine
	coordChanged chan struct{}
	done         chan struct{}
	doneErr      error
	once         sync.Once
}

// New validates cfg and returns a server ready to Run.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger.With().Uint32("node", cfg.ID).Uint64("inc", cfg.Incarnation).Logger(),
		dd:     newDedup(),
		tables: make(map[int]*table),
		prims:  make(map[int]*primary),
		sec:    make(map[int]*secState),

		highWater: make(map[int]uint64),
		linked:    make(map[int]bool),
		recovered: make(map[int]uint64),
		tails:     make(map[int]*logTail),
		done:      make(chan struct{}),

		coordChanged: make(chan struct{}, 1),
		met:          newServerMetrics(),
	}
	s.gate = newGate(&cfg, s.met)
	s.tls = newServerTLS(cfg.TLS)
	if cfg.TLS != nil {
		cfg.TLS.LogReloads(s.log) // (its lines name the server, as every other)
	}
	s.registerGauges()
	s.dd.configure(cfg.sessionConfig())
	if d := testStartDelay(cfg.ID); d > 0 {
		time.Sleep(d) // a test's stand-in for a large log or an outage (testcut.go)
	}
	if cfg.DataDir != "" {
		if err := s.openDurable(); err != nil {
			s.unlockDataDir()
			return nil, err
		}
	}
	s.coordLease = newLeaseTracker(cfg.Timing.Lease)
	s.penv = &primaryEnv{id: cfg.ID, inc: cfg.Incarnation, secret: cfg.Secret, tm: cfg.Timing, dd: s.dd,
		coordLease: s.coordLease, engine: s.clientEngine, noteIndex: s.noteIndex, log: s.log, dur: s.dur, srv: s}
	// -coord names every coordinator of a group (comma-separated), the
	// one that spawned this server first.
	s.coords = strings.Split(cfg.CoordAddr, ",")
	addr := s.coords[0]
	s.coordAddr.Store(&addr)
	return s, nil
}

// clientEngine is the engine of the client port (links are enrolled there).
func (s *Server) clientEngine() gnet.Engine { return s.engines[0] }

// Addrs returns the advertised client, peer and control addresses once Run
// has bound them.
func (s *Server) Addrs() (client, peer, ctl string) {
	return s.addrs.client, s.addrs.peer, s.addrs.ctl
}

// Run binds the three listeners, starts heartbeats and serves until the
// coordinator orders a shutdown (tables dumped) or ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if n, _, err := accept.RaiseNoFile(); err != nil {
		s.log.Warn().Err(err).Msg("RLIMIT_NOFILE not raised")
	} else {
		s.log.Info().Uint64("nofile", n).Msg("descriptor limit")
	}
	glog := gnetlog.Logger{L: s.log}
	budget := connlimit.NewBudget(s.cfg.Limits.WithDefaults().OutputBudget)
	clim, plim, climCtl := s.portLimits(s.cfg.Limits, budget)
	s.bufs.Store(&clientBuffers{out: budget, in: clim.InputBudget, inflight: clim.Inflight})
	s.tls.ports(&clim, &plim, &climCtl)
	type lis struct {
		h     gnet.EventHandler
		port  int
		addr  *string
		loops int
		lim   connlimit.Config
	}
	loops := s.cfg.Loops
	ch := &clientHandler{s: s, ready: make(chan struct{})}
	ls := []lis{
		{ch, s.cfg.ClientPort, &s.addrs.client, loops, clim},
		{&peerHandler{s: s}, s.cfg.PeerPort, &s.addrs.peer, loops, plim},
		{&ctlHandler{s: s}, s.cfg.CtlPort, &s.addrs.ctl, 1, climCtl},
	}
	ports := make([]*connlimit.Port, 0, len(ls))
	defer func() {
		for _, p := range ports {
			_ = p.Close()
		}
	}()
	errc := make(chan error, len(ls))
	s.engines = make([]gnet.Engine, len(ls))
	for i, l := range ls {
		opts := []gnet.Option{
			gnet.WithLogger(glog),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithTicker(false),
		}
		if l.loops > 0 {
			opts = append(opts, gnet.WithNumEventLoop(l.loops))
		} else {
			opts = append(opts, gnet.WithMulticore(true))
		}
		// Connections are accepted by connlimit (gnet's acceptor stops its
		// engine on EMFILE) and enrolled into the port's engine, as the
		// replication links are into the client engine.
		p, err := connlimit.Listen(net.JoinHostPort(s.cfg.BindHost, strconv.Itoa(l.port)), l.h, l.lim, opts...)
		if err != nil {
			return fmt.Errorf("server %d: listen: %w", s.cfg.ID, err)
		}
		ports = append(ports, p)
		s.engines[i] = p.Engine()
		if i == 0 {
			s.met.client, s.met.budget, s.met.inflight = p, budget, l.lim.Inflight
		}
		port := 0
		if a, ok := p.Addr().(*net.TCPAddr); ok {
			port = a.Port
		}
		*l.addr = net.JoinHostPort(s.cfg.AdvertiseHost, strconv.Itoa(port))
		go func() { errc <- <-p.Err() }()
	}
	// One connection to ourselves proves the client engine's loops run
	// (and orders their set-up before the replication links that are
	// enrolled into it later).
	if err := selfDial(s.addrs.client, ch.ready, s.cfg.Timing); err != nil {
		return fmt.Errorf("server %d: client engine did not start: %w", s.cfg.ID, err)
	}
	if err := s.startMetrics(); err != nil {
		return fmt.Errorf("server %d: metrics: %w", s.cfg.ID, err)
	}
	if s.metricsLn != nil {
		defer s.metricsLn.Close()
	}
	s.log.Info().Str("client", s.addrs.client).Str("peer", s.addrs.peer).Str("ctl", s.addrs.ctl).Str("metrics", s.addrs.metrics).Msg("listening")
	go s.heartbeatLoop(ctx)
	if s.cfg.TuneGC {
		go s.tuneGC(ctx)
	}
	if s.dur != nil {
		go s.snapshotLoop(ctx)
	}
	select {
	case <-s.done:
		return s.doneErr
	case <-ctx.Done():
		return ctx.Err()
	case err := <-errc:
		return fmt.Errorf("server %d: engine stopped: %w", s.cfg.ID, err)
	}
}

func selfDial(addr string, ready <-chan struct{}, tm timing.Config) error {
	nc, err := net.DialTimeout("tcp", addr, tm.Dial)
	if err != nil {
		return err
	}
	defer nc.Close()
	select {
	case <-ready:
		return nil
	case <-time.After(tm.Handshake):
		return fmt.Errorf("no event loop accepted a connection within %s", tm.Handshake)
	}
}

func (s *Server) finish(err error) {
	s.once.Do(func() {
		s.doneErr = err
		close(s.done)
	})
}

func (s *Server) secretOK(b []byte) bool {
	return subtle.ConstantTimeCompare(b, []byte(s.cfg.Secret)) == 1
}

func (s *Server) tableFor(shard int) *table {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tables[shard]
	if t == nil {
		t = newTable()
		s.tables[shard] = t
	}
	return t
}

// primaries are the shards this server leads, at the time of the call.
func (s *Server) primaries() []*primary {
	s.mu.Lock()
	defer s.mu.Unlock()
	prims := make([]*primary, 0, len(s.prims))
	for _, p := range s.prims {
		prims = append(prims, p)
	}
	return prims
}

// shutdown stops taking writes, lets replication drain, dumps the tables
// and ends Run.
func (s *Server) shutdown() error {
	s.closing.Store(true)
	prims := s.primaries()
	deadline := time.Now().Add(s.cfg.Timing.ShutdownDrain)
	for _, p := range prims {
		p.drain(deadline)
	}
	// From here this server's copies are what its log will hold: the
	// links that feed them are fenced (nothing more applied or
	// acknowledged; new ones are refused), then the dump, then the log
	// closes, synced. A stop lets a copy stopped in order lead alone at
	// the next start; a secondary that went on acknowledging writes
	// after its log closed, until its exit, lost them there while its
	// primary (still draining) acknowledged them
	// (TestStoppedSecondaryAcknowledgesNothingAfterItsLog). Writes a
	// primary elsewhere has in flight wait, and fail with its stop.
	s.fenceAllLinks()
	vs := s.view.Load()
	var ptabs, stabs []*table
	s.mu.Lock()
	for shard, t := range s.tables {
		role := "secondary"
		if vs != nil && shard < len(vs.v.Shards) && int(vs.v.Shards[shard].Primary) == vs.me {
			role = "primary"
		}
		if role == "primary" {
			ptabs = append(ptabs, t)
		} else {
			stabs = append(stabs, t)
		}
	}
	s.mu.Unlock()
	base := filepath.Join(s.cfg.DumpDir, fmt.Sprintf("server_%d", s.cfg.ID))
	start := time.Now()
	for _, d := range []struct {
		suffix string
		tabs   []*table
		home   int // the shard this dump holds when every server is home
	}{{".primary", ptabs, int(s.cfg.ID)}, {".secondary", stabs, int(s.cfg.ID) - 1}} {
		if vs != nil && len(vs.v.Shards) > 0 {
			n := len(vs.v.Shards)
			if h := (d.home + n) % n; vs.v.Shards[h].Primary < 0 {
				// No copy of the shard is served (none was found at
				// the start, say): the table here is not its copy, and
				// an empty dump would say the shard is empty. The dump
				// of the last stop that had one stays.
				s.log.Warn().Int("shard", h).Str("file", base+d.suffix).Msg("not dumped: the shard is unavailable; the file is left as it was")
				continue
			}
		}
		if err := writeDump(base+d.suffix, d.tabs); err != nil {
			return err
		}
	}
	s.log.Info().Int64("took_ms", time.Since(start).Milliseconds()).Str("dir", s.cfg.DumpDir).Msg("tables dumped")
	for _, p := range prims {
		p.close()
	}
	if s.dur != nil {
		if err := s.dur.log.Close(); err != nil {
			s.log.Error().Err(err).Msg("closing the write-ahead log")
		}
	}
	s.unlockDataDir()
	return nil
}

// unlockDataDir releases the data directory's lock (the process's exit
// does as well).
func (s *Server) unlockDataDir() {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if s.dirLock != nil && !s.unlocked {
		s.dirLock.Close()
		s.unlocked = true
	}
}
