// Package accept is the accept path of ftkv's listening ports.
//
// gnet v2's own acceptor stops its whole engine on any accept error other
// than EAGAIN, EINTR, ECONNRESET and ECONNABORTED: a client holding enough
// connections to exhaust the process's descriptors (EMFILE) took a server
// down. Here a standard net.Listener accepts in a goroutine; an error from
// exhausted resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) is logged at most
// once a second and retried after a back-off, and the accepted connection
// is handed to an event loop (Config.Enroll). A connection beyond MaxConns
// gets one error message and is closed, as Redis does at maxclients,
// unless Config.Full frees a slot for it.
package accept

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Back-off after an accept error from exhausted resources (as net/http's).
const (
	backoffMin = 5 * time.Millisecond // timing: exception — local resource back-off, unrelated to the failure timeout
	backoffMax = time.Second          // timing: exception — as above
	logEvery   = time.Second          // timing: exception — log rate limit
	rejectWait = 100 * time.Millisecond
)

// Config configures an Acceptor.
type Config struct {
	// Name names the port in logs ("client", "peer", "control").
	Name string
	// MaxConns bounds the open connections (0: no bound).
	MaxConns int
	// Reject is written to a connection refused because MaxConns are
	// open, before it is closed.
	Reject []byte
	// Enroll takes over an accepted connection (hands it to an event
	// loop). The Acceptor counts it as open until Closed is called.
	Enroll func(net.Conn) error
	// Full, when set, is asked when MaxConns are open, before refusing a
	// new connection: it may free a slot (close a connection, which calls
	// Closed once closed) and return true, and the new connection is then
	// enrolled.
	Full func() bool
	// Refuse, when set, takes over a connection refused because MaxConns
	// are open (instead of Reject written and the connection closed); it
	// must not block.
	Refuse func(net.Conn)
	Log    zerolog.Logger
}

// Acceptor accepts connections from a listener until it is closed.
type Acceptor struct {
	cfg Config
	ln  net.Listener

	open     atomic.Int64
	rejected atomic.Uint64

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int

	reserve *os.File // closed to make room for one accept when out of descriptors
}

// New returns an Acceptor for ln; Serve runs it.
func New(ln net.Listener, cfg Config) *Acceptor {
	a := &Acceptor{cfg: cfg, ln: ln}
	a.reserve, _ = os.Open(os.DevNull)
	return a
}

// Addr is the listener's address.
func (a *Acceptor) Addr() net.Addr { return a.ln.Addr() }

// Open is the number of connections enrolled and not yet closed.
func (a *Acceptor) Open() int { return int(a.open.Load()) }

// Rejected is the number of connections refused at MaxConns.
func (a *Acceptor) Rejected() uint64 { return a.rejected.Load() }

// Closed tells the Acceptor that an enrolled connection has closed.
func (a *Acceptor) Closed() { a.open.Add(-1) }

// Close stops accepting.
func (a *Acceptor) Close() error {
	err := a.ln.Close()
	if a.reserve != nil {
		_ = a.reserve.Close()
	}
	return err
}

// Serve accepts until the listener is closed (then it returns nil).
func (a *Acceptor) Serve() error {
	backoff := time.Duration(0)
	for {
		nc, err := a.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !Exhausted(err) && !isTemporary(err) {
				return err
			}
			if Exhausted(err) {
				a.shed()
			}
			backoff = min(max(2*backoff, backoffMin), backoffMax)
			a.logf(err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if a.cfg.MaxConns > 0 && int(a.open.Load()) >= a.cfg.MaxConns && (a.cfg.Full == nil || !a.cfg.Full()) {
			a.rejected.Add(1)
			a.refuse(nc)
			a.logf(errors.New("max clients reached"), 0)
			continue
		}
		a.open.Add(1)
		if err := a.cfg.Enroll(nc); err != nil {
			a.open.Add(-1)
			_ = nc.Close()
			a.logf(err, 0)
		}
	}
}

// refuse writes the rejection (never blocking for long) and closes nc.
func (a *Acceptor) refuse(nc net.Conn) {
	if a.cfg.Refuse != nil {
		a.cfg.Refuse(nc)
		return
	}
	if len(a.cfg.Reject) > 0 {
		_ = nc.SetWriteDeadline(time.Now().Add(rejectWait))
		_, _ = nc.Write(a.cfg.Reject)
	}
	_ = nc.Close()
}

// shed makes room for one accept when the process is out of descriptors,
// so the connection at the head of the queue is refused (and told why)
// instead of waiting in the backlog while every retry fails.
func (a *Acceptor) shed() {
	if a.reserve == nil {
		return
	}
	_ = a.reserve.Close()
	a.reserve = nil
	if nc, err := a.ln.Accept(); err == nil {
		a.rejected.Add(1)
		a.refuse(nc)
	}
	a.reserve, _ = os.Open(os.DevNull)
}

// logf logs an accept problem at most once per logEvery, with the number
// of problems it did not log.
func (a *Acceptor) logf(err error, backoff time.Duration) {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	if time.Since(a.lastLog) < logEvery {
		a.suppressed++
		return
	}
	ev := a.cfg.Log.Warn().Str("port", a.cfg.Name).Err(err).Int("open", a.Open()).Int("max", a.cfg.MaxConns).
		Int("not_logged", a.suppressed)
	if backoff > 0 {
		ev = ev.Int64("backoff_ms", backoff.Milliseconds())
	}
	ev.Msg("accept: connection refused or delayed")
	a.lastLog = time.Now()
	a.suppressed = 0
}

// Exhausted reports whether err comes from exhausted resources: the
// condition passes as connections close.
func Exhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func isTemporary(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// RaiseNoFile raises this process's soft RLIMIT_NOFILE to its hard limit
// and returns both as they are afterwards.
func RaiseNoFile() (soft, hard uint64, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	if rl.Cur < rl.Max {
		want := unix.Rlimit{Cur: rl.Max, Max: rl.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			return rl.Cur, rl.Max, err
		}
		rl = want
	}
	return rl.Cur, rl.Max, nil
}
