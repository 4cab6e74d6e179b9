// Package connlimit serves a listening port with gnet event loops under
// per-connection limits, so that no client can take a server down:
//
//   - Connections are accepted by package accept (a standard listener that
//     survives EMFILE and refuses connections beyond a maximum with one
//     message) and enrolled into a gnet engine whose own acceptor listens
//     on a unix socket nobody can reach: gnet v2.10's acceptor stops its
//     whole engine on EMFILE.
//   - Queued output per connection: over the soft limit the connection's
//     requests are no longer decoded (they stay in gnet's inbound buffer)
//     until the output drains; over the hard limit, or over the soft limit
//     for longer than the grace period, the connection is closed. A budget
//     shared by several ports bounds the sum: beyond it every connection
//     holding more than BudgetFloor pauses too; on a port of clients
//     (Evict) the connections whose output went unread longest are closed
//     until the sum is back under the budget, and beyond one and a half
//     times the budget a server's answers over BudgetFloor wait (Gate).
//   - Requests read but not answered per connection (Begin, Done): beyond
//     MaxInflight reading pauses until answers go out; and their bytes on
//     the connections of several ports together: beyond the Inflight
//     budget every connection with a request in flight pauses.
//   - A paused connection is not read: its socket is taken out of its
//     loop's epoll interest until it resumes (readoff.go; gnet has no
//     call for it). While paused, a connection whose unread input (read
//     before its pause) exceeds InboundCap is closed, unless its queued
//     output shrank recently or it paused just now (a client that reads
//     its answers is slowed, not closed: see drainWindow); then at half
//     the InputBudget.
//   - Input held by connections (incomplete frames, unread input of paused
//     ones) is counted in an InputBudget shared by several ports: over
//     half of it a connection holding an incomplete frame pauses (up
//     to inputHoldMax) while one holding more is completing its frame
//     (holdBack); beyond it the connection holding the most is closed.
//   - A frame held incomplete longer than FrameTimeout closes the
//     connection, unless the handler holds the input itself (Hold);
//     IdleTimeout (0: off) closes connections idle that long.
//   - Before Authed, frames larger than PreAuthMaxFrame are refused; after
//     it (and on ports without authentication), those larger than MaxFrame.
//   - On a port with RequireAuth, a connection not Authed within
//     AuthTimeout is closed, and at MaxConns a new connection evicts the
//     oldest one not Authed (an authenticated link is never evicted).
//
// A Port wraps the port's gnet.EventHandler: the handler decodes with
// Decode and keeps its own per-connection state in State.Data. Nothing
// calls OnTraffic when output drains, so a sweeper goroutine visits the
// connections that are paused or hold output every few milliseconds (on
// their event loops) and wakes those that may read again.
package connlimit

import (
	"cmp"
	"container/list"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"ftkv/internal/accept"
	"ftkv/internal/tlsconf"
	"ftkv/internal/tlsgnet"
	"ftkv/limits"
	"ftkv/wire"
)

// Defaults of Config.
const (
	// BudgetFloor: beyond the shared budget, connections holding more
	// output than this pause.
	BudgetFloor = 64 << 10
	// PreAuthMaxFrame is the usual size limit before authentication: a
	// HELLO holds little more than the secret.
	PreAuthMaxFrame = 4 << 10
)

// Sweep periods. timing: exception — local buffer bookkeeping, unrelated
// to the failure timeout.
const (
	fastSweep = 2 * time.Millisecond   // while connections are paused or hold output
	slowSweep = 250 * time.Millisecond // frame and idle timeouts
	logEvery  = time.Second            // closures logged at most this often
	// A paused connection may hold unread input up to half the
	// InputBudget (readingMax without one) instead of InboundCap while it
	// shows it reads: its queued output shrank less than drainWindow ago,
	// or it paused less than firstDrain ago (its first read may still
	// come; freshMax only if it never read and its input is many small
	// requests: State.mayRead). A client that reads its answers stalls now and then
	// (scheduling, its collector, its own pauses) while its other
	// goroutines go on sending, several pipelined batches at once:
	// TestHonestPipelinedWriter's three batches of 16 GETs and 16 PUTs of
	// 1 MiB held 10 MiB unread 2-6 ms after its first pause, before any
	// read, and 35 MiB at times, on a quiet machine. One that never reads
	// drains nothing once paused (the kernel's buffers are full by then)
	// and goes on sending, and gnet's buffer holding its input grows by
	// copies: it is closed firstDrain after its pause.
	drainWindow = 250 * time.Millisecond
	firstDrain  = 50 * time.Millisecond
	readingMax  = 32 << 20
	freshMax    = 1 << 20
	// maxEvicting bounds the evictions (MaxConns) not yet closed: the
	// port holds at most MaxConns plus these.
	maxEvicting = 64
	// maxTLSRefusals bounds the refusals at MaxConns on a TLS port whose
	// handshake runs at once, and tlsRefuseWait each one's duration.
	maxTLSRefusals = 8

	tlsRefuseWait = time.Second
)

// Config configures a Port. Zero values mean no limit, except where noted.
type Config struct {
	Name     string // names the port in logs ("client", "peer", "control")
	MaxConns int    // open connections; beyond: Reject is written, then close
	Reject   []byte // see MaxConns (default: an UNAVAILABLE frame "max clients reached")

	OutputSoft  int           // queued output at which reading pauses
	OutputHard  int           // queued output at which the connection is closed
	OutputGrace time.Duration // longest stay over OutputSoft
	Budget      *Budget       // shared by the server's ports (nil: none)
	// Evict: the port serves clients (not cluster links). Beyond the
	// Budget its connections whose output went unread longest are
	// closed, as many as bring the budget back under (see evict.go).
	// (Pausing every connection beyond one and a half times the Budget
	// let clients holding under BudgetFloor each, never evicted, stop a
	// gateway for good: a review.)
	Evict bool
	// StaleAfter: how long an Evict port's connection may hold output
	// without a drain before it may be closed (0: staleAfter, 100 ms).
	StaleAfter time.Duration
	// FirstDrain: how long after its first pause a connection that never
	// read may hold more than InboundCap, its first read still to come
	// (0: firstDrain, 50 ms).
	FirstDrain time.Duration
	// Gate: the handler holds back answers larger than BudgetFloor
	// beyond one and a half times the Budget (HoldBack), and those
	// connections pause; a client whose answers are small is served on.
	Gate        bool
	MaxInflight int // requests read but not answered (Begin, Done)
	// Inflight bounds the bytes of requests read but not answered on
	// the connections of several ports together (Begin, Done): beyond
	// it, every connection with a request in flight pauses.
	Inflight *Budget
	// InboundCap closes a paused connection holding more unread input,
	// or more than its first frame when that is longer (default 256 KiB:
	// a connection is paused only when it does not read its answers,
	// and gnet grows its input buffer by copies into fresh memory, each
	// of whose pages faults in: 500 connections that never read, each
	// pipelining GETs, had those copies take 64 % of the server's time
	// in a profile; with a cap of 1 MiB an event loop's tasks waited up
	// to 1.2 s, and in 6 runs of TestHostileManySlowReaders the honest
	// client's slowest operation took 0.6-1.8 s and the server grew by
	// 128-194 MiB, with 256 KiB 0.6-1.5 s and 95-120 MiB).
	InboundCap int

	InputBudget *InputBudget // shared by the server's ports (nil: none)
	// Requests counts the requests that begin in buf, the first bytes of
	// a connection's unread input, counting no further than max (the
	// wire protocol's: wire.CountFrames). With it, a paused connection
	// that never read and whose input is many small requests gets a
	// smaller allowance for its first read (freshMax, State.mayRead);
	// nil: every one gets the whole allowance.
	Requests func(buf []byte, max int) int

	FrameTimeout    time.Duration // longest hold of an incomplete frame
	IdleTimeout     time.Duration // longest silence between frames
	PreAuthMaxFrame int           // frame size limit until Authed (0: none)
	MaxFrame        int           // frame size limit (after Authed; 0: wire.MaxFrame)
	// RequireAuth: every legitimate connection authenticates (Authed)
	// first. One that has not within AuthTimeout is closed, and at
	// MaxConns a new connection evicts the oldest one not authenticated
	// instead of being refused.
	RequireAuth bool
	AuthTimeout time.Duration // see RequireAuth (0: no deadline)

	// TLS, when set, makes the port speak TLS (package tlsgnet: the
	// handler sees plaintext). A client that does not start a handshake
	// gets Plaintext(its first bytes) in clear and is closed (default:
	// tlsconf.WirePlaintext). The handshake must end within AuthTimeout,
	// else FrameTimeout, else tlsgnet's default.
	TLS       *tls.Config
	Plaintext func(first []byte) []byte

	Log zerolog.Logger
}

// FromLimits is the configuration of a port clients use, named name,
// under the client limits l (zero limits take their defaults). Budgets,
// frame sizes and authentication are the caller's to add.
func FromLimits(name string, l limits.Config, log zerolog.Logger) Config {
	l = l.WithDefaults()
	return Config{
		Name:         name,
		MaxConns:     l.MaxClients,
		OutputSoft:   int(l.OutputSoftLimit),
		OutputHard:   int(l.OutputHardLimit),
		OutputGrace:  l.OutputGrace,
		MaxInflight:  l.MaxInflight,
		FrameTimeout: l.FrameTimeout,
		IdleTimeout:  l.IdleTimeout,
		Log:          log,
	}
}

// wrapTLS puts TLS between gnet and h.
func (c *Config) wrapTLS(h gnet.EventHandler) gnet.EventHandler {
	plain := c.Plaintext
	if plain == nil {
		plain = tlsconf.WirePlaintext
	}
	opts := []tlsgnet.Option{tlsgnet.WithOnPlaintext(plain), tlsgnet.WithLogger(c.Log.With().Str("port", c.Name).Logger())}
	if d := cmp.Or(c.AuthTimeout, c.FrameTimeout); d > 0 {
		opts = append(opts, tlsgnet.WithHandshakeTimeout(d))
	}
	return tlsgnet.Wrap(h, c.TLS, opts...)
}

func (c *Config) setDefaults() {
	if c.InboundCap <= 0 {
		c.InboundCap = 256 << 10
	}
	if c.Reject == nil {
		c.Reject = wire.Append(nil, &wire.Frame{Op: wire.OpHello, Status: wire.StatusUnavailable,
			Value: []byte("max clients reached")})
	}
}

// Budget bounds bytes held for the connections of several ports
// together: their queued output (Config.Budget), or their requests in
// flight (Config.Inflight).
type Budget struct {
	limit int64
	used  atomic.Int64
	h     holders // output budget: connections of Evict ports holding output
}

// NewBudget returns a budget of limit bytes (<= 0: unlimited).
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Used is the bytes counted against the budget.
func (b *Budget) Used() int64 { return b.used.Load() }

func (b *Budget) add(n int64) {
	if b != nil && n != 0 {
		b.used.Add(n)
	}
}

func (b *Budget) over() bool { return b.overWith(0) }

// overWith reports whether the budget is exceeded with pending bytes not
// counted yet.
func (b *Budget) overWith(pending int64) bool {
	return b != nil && b.limit > 0 && b.used.Load()+pending > b.limit
}

// above reports whether more than num/den of the budget is used.
func (b *Budget) above(num, den int64) bool { return b.aboveWith(num, den, 0) }

// aboveWith is above with pending bytes not counted yet.
func (b *Budget) aboveWith(num, den, pending int64) bool {
	return b != nil && b.limit > 0 && b.used.Load()+pending > b.limit/den*num
}

// Port is one listening port served by a gnet engine under Config's limits.
type Port struct {
	cfg  Config
	acc  *accept.Acceptor
	eng  gnet.Engine
	h    *handler
	errc chan error
	done chan struct{}
	once sync.Once

	now  atomic.Int64 // a coarse clock (unix ns), set by the sweeper
	kick chan struct{}

	mu    sync.Mutex
	loops map[gnet.EventLoop]*loopSet

	umu      sync.Mutex
	unauth   list.List    // open connections not Authed (RequireAuth), or that never sent a byte (other ports), oldest first (*State)
	evicting atomic.Int64 // evicted, not closed yet
	evicted  atomic.Uint64

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int
	closed     atomic.Uint64 // connections closed for a limit
	evictedOut atomic.Uint64 // of them, closed for the output budget (Evict)

	refusing chan struct{} // TLS refusals under way (refuseTLS)
}

// Listen binds addr (host:port) and serves it with h on a new gnet engine
// started with opts (load balancing is forced to LeastConnections, which
// enrolling connections needs). A bind failure is returned.
func Listen(addr string, h gnet.EventHandler, cfg Config, opts ...gnet.Option) (*Port, error) {
	cfg.setDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Port{cfg: cfg, errc: make(chan error, 2), done: make(chan struct{}), kick: make(chan struct{}, 1),
		loops: make(map[gnet.EventLoop]*loopSet)}
	p.now.Store(time.Now().UnixNano())
	// gnet needs a listener of its own; a unix socket whose name is
	// removed once bound cannot be reached, so gnet's acceptor never runs.
	dir, err := os.MkdirTemp("", "ftkv-gnet-")
	if err != nil {
		ln.Close()
		return nil, err
	}
	defer os.RemoveAll(dir)
	booted := make(chan gnet.Engine, 1)
	p.h = &handler{EventHandler: h, p: p, booted: booted, ready: make(chan struct{})}
	opts = append(opts, gnet.WithLoadBalancing(gnet.LeastConnections))
	sock := filepath.Join(dir, "s")
	run := gnet.EventHandler(p.h)
	if cfg.TLS != nil {
		run = cfg.wrapTLS(p.h)
	}
	go func() { p.errc <- gnet.Run(run, "unix://"+sock, opts...) }()
	select {
	case p.eng = <-booted:
	case err := <-p.errc:
		ln.Close()
		return nil, fmt.Errorf("%s engine: %w", cfg.Name, err)
	}
	// gnet calls OnBoot before its event loops exist; a connection to the
	// unix socket, opened on a loop, proves they run.
	if err := p.h.selfDial(sock); err != nil {
		ln.Close()
		_ = p.eng.Stop(context.Background())
		return nil, fmt.Errorf("%s engine: %w", cfg.Name, err)
	}
	acfg := accept.Config{Name: cfg.Name, MaxConns: cfg.MaxConns, Reject: cfg.Reject,
		Enroll: p.enroll, Full: p.full, Log: cfg.Log}
	if cfg.TLS != nil {
		p.refusing = make(chan struct{}, maxTLSRefusals)
		acfg.Refuse = p.refuseTLS
	}
	p.acc = accept.New(ln, acfg)
	go func() {
		if err := p.acc.Serve(); err != nil {
			p.errc <- fmt.Errorf("%s accept: %w", cfg.Name, err)
		}
	}()
	go p.sweeper()
	return p, nil
}

// Addr is the bound TCP address.
func (p *Port) Addr() net.Addr { return p.acc.Addr() }

// Engine is the port's gnet engine (other connections may be registered
// into it).
func (p *Port) Engine() gnet.Engine { return p.eng }

// Err delivers the error that stopped the engine or the accept loop.
func (p *Port) Err() <-chan error { return p.errc }

// Open is the number of accepted connections still open.
func (p *Port) Open() int { return p.acc.Open() }

// Rejected is the number of connections refused at MaxConns.
func (p *Port) Rejected() uint64 { return p.acc.Rejected() }

// LimitClosed is the number of connections closed for breaking a limit.
func (p *Port) LimitClosed() uint64 { return p.closed.Load() }

// OutputEvicted is the number of connections closed to bring the output
// budget back under its limit (Config.Evict).
func (p *Port) OutputEvicted() uint64 { return p.evictedOut.Load() }

// Evicted is the number of connections not authenticated closed to make
// room at MaxConns.
func (p *Port) Evicted() uint64 { return p.evicted.Load() }

// Close stops accepting (the connections open stay served).
func (p *Port) Close() error { return p.acc.Close() }

// Stop closes the port and stops its engine and sweeper, closing its
// connections.
func (p *Port) Stop(ctx context.Context) error {
	err := p.Close()
	p.once.Do(func() { close(p.done) })
	if serr := p.eng.Stop(ctx); serr != nil && err == nil {
		err = serr
	}
	return err
}

// refuseTLS refuses a connection at MaxConns on a TLS port: the refusal
// is written inside TLS, once the handshake is done, so that a TLS client
// reads it (in clear it saw "first record does not look like a TLS
// handshake", redis-cli "wrong version number"). A handshake costs the
// server CPU, so at most maxTLSRefusals run at once, each within
// tlsRefuseWait; beyond that a refused connection is only closed (the Go
// client's error then still names the likely cause).
func (p *Port) refuseTLS(nc net.Conn) {
	select {
	case p.refusing <- struct{}{}:
	default:
		_ = nc.Close()
		return
	}
	go func() {
		defer func() { <-p.refusing }()
		tc := tls.Server(nc, p.cfg.TLS)
		_ = tc.SetDeadline(time.Now().Add(tlsRefuseWait))
		if tc.Handshake() == nil && len(p.cfg.Reject) > 0 {
			if _, err := tc.Write(p.cfg.Reject); err == nil {
				// The client wrote its first request right after the
				// handshake: closing with it unread sends a reset, which
				// can destroy the refusal in the client's buffer. Tell the
				// client we are done and read until it closes (bounded
				// by the deadline).
				_ = tc.CloseWrite()
				_, _ = io.Copy(io.Discard, tc)
			}
		}
		_ = tc.Close()
	}()
}

// enroll hands an accepted connection to an event loop.
func (p *Port) enroll(nc net.Conn) error {
	st := &State{p: p}
	st.dec.Max = p.cfg.MaxFrame
	if p.cfg.PreAuthMaxFrame > 0 {
		st.dec.Max = p.cfg.PreAuthMaxFrame
	}
	st.dec.More = st.more
	st.dec.Took = func(n int) { st.taken = n }
	st.lastRead = p.now.Load()
	st.opened = time.Now().UnixNano()
	resc, err := p.eng.Register(gnet.NewNetConnContext(gnet.NewContext(context.Background(), st), nc))
	if err != nil {
		return err
	}
	go func() {
		if res := <-resc; res.Err != nil {
			p.acc.Closed()
			p.logf(res.Err, "enrolling a connection failed", nil)
		}
	}()
	return nil
}

// full is the acceptor's question at MaxConns: on a RequireAuth port the
// oldest connection not authenticated is closed (on its loop, woken with
// the reason) to make room.
func (p *Port) full() bool {
	if p.evicting.Load() >= maxEvicting {
		return false
	}
	p.umu.Lock()
	e := p.unauth.Front()
	var st *State
	if e != nil && !p.cfg.RequireAuth && time.Since(time.Unix(0, e.Value.(*State).opened)) < SilentAfter {
		e = nil // (the oldest silent one may be a client about to speak)
	}
	if e != nil {
		st = p.unauth.Remove(e).(*State)
		st.unauthElem = nil
		st.evicting = true
		p.evicting.Add(1)
	}
	p.umu.Unlock()
	if st == nil {
		return false
	}
	p.evicted.Add(1)
	if p.cfg.RequireAuth {
		st.doom(errEvicted)
	} else {
		st.doom(errSilent)
	}
	return true
}

// SilentAfter is how long a connection to a port without RequireAuth may
// have sent nothing before a new one at MaxConns closes it (the oldest
// such) rather than being refused: connections that never spoke locked
// every new client out (an attack).
var SilentAfter = time.Second // timing: exception — a client sends its first request at once

// spoke takes st, which sent its first bytes, out of the silent
// connections (a port without RequireAuth; on st's loop).
func (p *Port) spoke(st *State) {
	st.spoke = true // (asked once: a RequireAuth port's list is Authed's)
	if p.cfg.RequireAuth {
		return
	}
	p.umu.Lock()
	if st.unauthElem != nil {
		p.unauth.Remove(st.unauthElem)
		st.unauthElem = nil
	}
	p.umu.Unlock()
}

// logf logs a closure or failure at most once per logEvery, with the
// number it did not log.
func (p *Port) logf(err error, msg string, st *State) {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	if time.Since(p.lastLog) < logEvery {
		p.suppressed++
		return
	}
	ev := p.cfg.Log.Warn().Str("port", p.cfg.Name).Int("not_logged", p.suppressed)
	if err != nil {
		ev = ev.Err(err)
	}
	if st != nil && st.c != nil {
		ev = ev.Str("remote", st.c.RemoteAddr().String()).Int64("out_bytes", st.out).
			Int("in_bytes", st.inbound()).Int64("inflight", st.inflight.Load())
	}
	ev.Msg(msg)
	p.lastLog = time.Now()
	p.suppressed = 0
}

// handler wraps the port's handler with the limits.
type handler struct {
	gnet.EventHandler
	p      *Port
	booted chan gnet.Engine
	ready  chan struct{} // closed when the self-dial is opened
	once   sync.Once
}

// startWait bounds the wait for the engine's loops. timing: exception —
// local start-up, unrelated to the failure timeout.
const startWait = 10 * time.Second

func (h *handler) selfDial(sock string) error {
	nc, err := net.DialTimeout("unix", sock, startWait)
	if err != nil {
		return err
	}
	defer nc.Close()
	select {
	case <-h.ready:
		return nil
	case <-time.After(startWait):
		return fmt.Errorf("no event loop took a connection within %s", startWait)
	}
}

// internal reports whether c is the self-dial on the unix socket.
func internal(c gnet.Conn) bool {
	_, ok := c.LocalAddr().(*net.UnixAddr)
	return ok
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.booted <- eng
	return h.EventHandler.OnBoot(eng)
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if internal(c) {
		h.once.Do(func() { close(h.ready) })
		return nil, gnet.Close
	}
	if st := Of(c); st != nil {
		st.c = c
		st.ls = h.p.loopSet(c.EventLoop())
		st.ls.all[st] = struct{}{}
		h.p.umu.Lock()
		if !st.authed.Load() && !st.gone {
			st.unauthElem = h.p.unauth.PushBack(st)
		}
		h.p.umu.Unlock()
	}
	return h.EventHandler.OnOpen(c)
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	if internal(c) {
		return gnet.None
	}
	act := h.EventHandler.OnClose(c, err)
	if st := Of(c); st != nil && !st.gone {
		st.gone = true
		delete(h.p.loopSet(c.EventLoop()).all, st)
		h.p.cfg.Budget.add(-st.out)
		st.out = 0
		st.outSeen.Store(0)
		h.p.cfg.InputBudget.release(st)
		st.untrack()
		h.p.unlist(st)
		h.p.acc.Closed()
	}
	return act
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	st := Of(c)
	if st == nil {
		if internal(c) {
			return gnet.Close
		}
		return h.EventHandler.OnTraffic(c) // not accepted here (a replication link)
	}
	p := h.p
	if st.gone {
		return gnet.None // a stale wake
	}
	if why := st.doomed.Load(); why != nil && !(*why == errOutputBudget && st.spare(why)) {
		if *why == errOutputBudget {
			p.evictedOut.Add(1)
		}
		return st.kill(*why)
	}
	if !st.spoke && st.inbound() > 0 {
		p.spoke(st)
	}
	now := p.now.Load()
	if st.woken {
		st.woken = false
	} else {
		st.lastRead = now
	}
	if st.blocked(0) {
		st.pause()
		st.partialSince = 0
		if act := st.note(now); act != gnet.None { // (has the output shrunk?)
			return act
		}
		if why := st.inboundOver(); why != nil {
			return st.kill(why)
		}
		p.watch(st)
		st.stopReading()
		return st.holdInput()
	}
	if st.inputHeld && time.Duration(time.Now().UnixNano()-st.pausedAt) >= inputHoldMax {
		st.holdSpent = true // (until its input is read to the end)
	}
	st.paused, st.holding, st.budgetHeld, st.gated, st.inputHeld = false, false, false, false, false
	before := st.inbound()
	act := h.EventHandler.OnTraffic(c)
	if act != gnet.None {
		return act
	}
	after := st.inbound()
	if after == 0 {
		st.holdSpent = false
	}
	switch {
	case st.paused:
		st.partialSince = 0
		if why := st.inboundOver(); why != nil {
			return st.kill(why)
		}
	case after == 0:
		st.partialSince = 0
	case after < before || st.partialSince == 0:
		// A frame started and is not complete yet. The exact time, not
		// the coarse clock (up to slowSweep old): a frame must never be
		// cut before frame_timeout.
		st.partialSince = time.Now().UnixNano()
	}
	if act := st.holdInput(); act != gnet.None {
		return act
	}
	if !st.paused && after > 0 && p.cfg.InputBudget.holdBack(st) {
		// An incomplete frame, and the input budget half
		// spent: it waits, unread, for the connections holding more
		// to complete theirs (readoff.go).
		st.inputHeld = true
		st.pause()
		st.partialSince = 0
		p.watch(st)
	}
	if st.paused || st.holding {
		// (Held by its handler, a connection read on: gnet took in all
		// its client sent, and the gateway's clients sending SETs of 1
		// MiB, never reading, grew single buffers to 64 MB.)
		st.stopReading()
	} else {
		st.startReading()
	}
	return st.note(now)
}

// unlist takes st out of the connections not authenticated (or silent).
func (p *Port) unlist(st *State) {
	p.umu.Lock()
	if st.unauthElem != nil {
		p.unauth.Remove(st.unauthElem)
		st.unauthElem = nil
	}
	if st.gone {
		st.listGone = true
	}
	if st.evicting && st.gone {
		st.evicting = false
		p.evicting.Add(-1)
	}
	p.umu.Unlock()
}
