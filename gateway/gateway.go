package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"ftkv/client"
	"ftkv/internal/accept"
	"ftkv/internal/connlimit"
	"ftkv/internal/gnetlog"
	"ftkv/limits"
	"ftkv/status"
)

// Store is what the gateway needs of the cluster; *client.Client is one.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
	Append(ctx context.Context, key string, value []byte) error
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
	CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error)
	Batch(ctx context.Context, ops []client.BatchOp) error
	Status(ctx context.Context) (*status.Cluster, error)
}

// Defaults of Config.
const (
	DefaultListen = "127.0.0.1:6380"
	// DefaultTimeout bounds one command's wait for the cluster: a
	// failover takes about one failure timeout, well under it.
	DefaultTimeout = 5 * time.Second
	// DefaultMaxRequest bounds one command's size (a value is at most
	// 1 MiB; MSET and DEL may carry many).
	DefaultMaxRequest = 16 << 20
)

// Config configures a Gateway. Zero values mean the defaults.
type Config struct {
	Store  Store  // the cluster (required)
	Listen string // RESP address (DefaultListen)
	// TLS, when set, makes the RESP port speak TLS (redis-cli --tls) and
	// the HTTP API HTTPS; a client in clear gets an error and is closed.
	TLS  *tls.Config
	HTTP string // HTTP API address ("" = none)
	// Limits bound the RESP clients as they bound a server's: max_clients,
	// the output limits and budget, the input budget, max_inflight (the
	// commands read but not answered per connection), idle_timeout;
	// frame_timeout bounds how long a half-sent command may wait.
	Limits     limits.Config
	Timeout    time.Duration // one command's wait for the cluster (DefaultTimeout)
	MaxRequest int           // one command's bytes (DefaultMaxRequest)
	Loops      int           // event loops (0: one per CPU)
	Logger     zerolog.Logger
	// Observe, when set, is called once per command after it is
	// answered, with its lowercase name, its duration and the error it
	// answered (nil on success), from the goroutine that ran it. It must
	// be safe for concurrent use and fast (a metrics hook).
	Observe func(cmd string, d time.Duration, err error)
	// Authenticate, when set, makes every client log in (AUTH, HELLO …
	// AUTH, HTTP Basic) as a user of the cluster, and limits it to its
	// role (auth.go).
	Authenticate Authenticator
	// OnLogin, when set, is told the outcome of every login (one of
	// auth.Logins but "no_credentials"); a metrics hook, like Observe.
	OnLogin func(outcome string)
}

// Gateway serves Redis clients (RESP2/RESP3) and an HTTP API over a cluster.
type Gateway struct {
	cfg     Config
	lim     limits.Config
	log     zerolog.Logger
	port    atomic.Pointer[connlimit.Port] // set by Start (read by workers: no other edge orders them)
	httpSrv *http.Server
	// httpBytes: the bodies the HTTP API holds (hold); httpValues: the
	// values it is writing. Each up to the input budget.
	httpBytes  *semaphore.Weighted
	httpValues atomic.Int64
	httpLn     net.Listener
	errc       chan error

	ctx    context.Context // ends when the gateway closes: commands in flight give up
	cancel context.CancelFunc

	jobs chan func() // idle workers take jobs here

	logins *logins // nil: no logins (Config.Authenticate unset)

	nextID   atomic.Int64
	clients  atomic.Int64
	sessions sync.Map // id -> *session, while open (CLIENT LIST)
	// queued: the bytes of the commands read and not answered, all
	// sessions together (session.queued's sum; inflight_budget).
	queued   atomic.Int64
	fetches  fetches // the values being fetched for answers (fetch.go)
	commands atomic.Uint64
	started  time.Time
	once     sync.Once
}

// New validates cfg and returns a Gateway; Start binds its ports.
func New(cfg Config) (*Gateway, error) {
	if cfg.Store == nil {
		return nil, errors.New("gateway: no Store")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRequest <= 0 {
		cfg.MaxRequest = DefaultMaxRequest
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g := &Gateway{cfg: cfg, lim: cfg.Limits.WithDefaults(), log: cfg.Logger, errc: make(chan error, 3), started: time.Now(),
		jobs: make(chan func())}
	g.httpBytes = semaphore.NewWeighted(g.lim.InputBudget)
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if cfg.Authenticate != nil {
		g.logins = newLogins(cfg.Authenticate, cfg.OnLogin, cfg.Logger)
	}
	return g, nil
}

// errPlaintext answers a client in clear on a TLS RESP port.
const errPlaintext = "-ERR this port requires TLS (redis-cli --tls --cacert ca.pem)\r\n"

// Start binds the RESP port (and the HTTP port when configured) and serves
// them in the background until Close.
func (g *Gateway) Start() error {
	if _, _, err := accept.RaiseNoFile(); err != nil {
		g.log.Warn().Err(err).Msg("RLIMIT_NOFILE not raised") // max_clients may not be reachable
	}
	lc := connlimit.FromLimits("resp", g.lim, g.log)
	lc.Reject = []byte(errMaxClients)
	lc.TLS = g.cfg.TLS
	lc.Plaintext = func([]byte) []byte { return []byte(errPlaintext) }
	lc.Budget, lc.Evict = connlimit.NewBudget(g.lim.OutputBudget), true
	lc.InputBudget = connlimit.NewInputBudget(g.lim.InputBudget)
	if g.logins != nil {
		// With users, as on the servers' client ports: a connection that
		// has not logged in within authTimeout is closed, and at
		// max_clients a new connection evicts the oldest one that has not
		// (10,000 connections that never sent AUTH locked every client
		// out: a review).
		lc.RequireAuth, lc.AuthTimeout = true, authTimeout
	}
	opts := []gnet.Option{
		gnet.WithLogger(gnetlog.Logger{L: g.log}),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTicker(false),
	}
	if g.cfg.Loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(g.cfg.Loops))
	} else {
		opts = append(opts, gnet.WithMulticore(true))
	}
	p, err := connlimit.Listen(g.cfg.Listen, &handler{g: g}, lc, opts...)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", g.cfg.Listen, err)
	}
	g.port.Store(p)
	go func() {
		if err := <-p.Err(); err != nil {
			g.errc <- err
		}
	}()
	if g.cfg.HTTP != "" {
		if err := g.startHTTP(); err != nil {
			_ = p.Stop(context.Background())
			return err
		}
	}
	return nil
}

// Addr is the bound RESP address.
func (g *Gateway) Addr() string { return g.port.Load().Addr().String() }

// HTTPAddr is the bound HTTP address ("" without one).
func (g *Gateway) HTTPAddr() string {
	if g.httpLn == nil {
		return ""
	}
	return g.httpLn.Addr().String()
}

// Err delivers an error that stopped serving.
func (g *Gateway) Err() <-chan error { return g.errc }

// Clients is the number of open RESP connections.
func (g *Gateway) Clients() int { return int(g.clients.Load()) }

// Closed returns the RESP connections refused at max_clients, closed for
// a limit of their own (output, input, frame or idle timeout; output
// evictions included) and, of them, closed for the output budget.
func (g *Gateway) Closed() (rejected, limit, outputEvicted uint64) {
	p := g.port.Load()
	if p == nil {
		return 0, 0, 0
	}
	return p.Rejected(), p.LimitClosed() + p.Evicted(), p.OutputEvicted()
}

// Queued returns the bytes of the commands read and not yet answered on
// every connection (inflight_budget bounds them).
func (g *Gateway) Queued() int64 { return g.queued.Load() }

// Close stops both ports; commands in flight are abandoned (their clients'
// connections close).
func (g *Gateway) Close(ctx context.Context) error {
	var err error
	g.once.Do(func() {
		g.cancel()
		if g.httpSrv != nil {
			err = g.httpSrv.Shutdown(ctx)
		}
		if p := g.port.Load(); p != nil {
			if perr := p.Stop(ctx); perr != nil && err == nil {
				err = perr
			}
		}
	})
	return err
}

// observe is the one point every command's outcome passes through.
func (g *Gateway) observe(name string, d time.Duration, err error) {
	g.commands.Add(1)
	if g.cfg.Observe != nil {
		g.cfg.Observe(name, d, err)
	}
}
