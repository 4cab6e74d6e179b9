package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

// Errors of Verify.
var (
	// ErrDenied: unknown user or wrong password (which one is not said).
	ErrDenied = errors.New("authentication failed: unknown user or wrong password")
	// ErrThrottled: too many failed attempts from this address lately.
	ErrThrottled = errors.New("too many failed authentication attempts from this address; retry later")
)

// Defaults of VerifierConfig.
const (
	DefaultFailBurst = 5
	DefaultFailEvery = time.Second
	// maxAddrs bounds the addresses whose failures are remembered.
	maxAddrs = 4096
	// maxCached bounds the cache (it holds verified passwords only, at
	// most one per user: bcrypt reads at most 72 bytes and longer
	// passwords are refused).
	maxCached = 4096
)

// VerifierConfig configures a Verifier. Zero values mean the defaults.
type VerifierConfig struct {
	// FailBurst failed attempts from one address (its IP) are answered at
	// once; beyond that one more every FailEvery, and the others are
	// refused with ErrThrottled without checking the password.
	FailBurst int
	FailEvery time.Duration
	// Parallel bounds the password checks running at once (default 2):
	// a flood of attempts queues instead of taking every core.
	Parallel int
	// Port names the port in log lines ("client", "coordinator client").
	Port string
	Log  zerolog.Logger
	// OnLogin, if set, is told the outcome of every login a Gate
	// answers (one of Logins), for the process's metrics. It must not
	// block: it may run on an event loop.
	OnLogin func(outcome string)
}

// The outcomes of a login, as OnLogin gets them: accepted; refused for
// an unknown user or a wrong password; refused unchecked because its
// address failed too often; not checked in time (the checks were all
// busy); a request sent without logging in first.
const (
	LoginOK        = "ok"
	LoginDenied    = "denied"
	LoginThrottled = "throttled"
	LoginUnchecked = "unchecked"
	LoginNoHello   = "no_credentials"
)

// Logins lists every login outcome (metrics register them all at start,
// so a rate sees the first one).
var Logins = []string{LoginOK, LoginDenied, LoginThrottled, LoginUnchecked, LoginNoHello}

// Outcome names err, as Verify returned it, as a login outcome.
func Outcome(err error) string {
	switch {
	case err == nil:
		return LoginOK
	case errors.Is(err, ErrDenied):
		return LoginDenied
	case errors.Is(err, ErrThrottled):
		return LoginThrottled
	}
	return LoginUnchecked
}

// Verifier checks credentials against a Table. Credentials that matched
// once are remembered for the life of the process (LoginCache: an
// HMAC-SHA256 under a random key drawn at start, never the password
// itself), so each process runs bcrypt once per user: 50 connections to
// each of N servers cost N checks, not 50·N. It is safe for concurrent
// use.
type Verifier struct {
	users *Table
	cfg   VerifierConfig
	sem   chan struct{}

	mu       sync.Mutex
	logins   *LoginCache[User]
	checks   atomic.Int64 // bcrypt checks run (tests)
	throttle *Throttle
	checking map[[32]byte]*check // checks in progress, joined by the same credentials from the same address

	dummyOnce sync.Once
	dummy     []byte // a hash at the table's cost, checked for unknown users
}

// check is a password check in progress: concurrent connections with the
// same credentials (a client opening its connections) wait for one check.
type check struct {
	done chan struct{}
	user User
	err  error
}

// NewVerifier returns a Verifier of users (which must not be empty).
func NewVerifier(users *Table, cfg VerifierConfig) *Verifier {
	if cfg.FailBurst <= 0 {
		cfg.FailBurst = DefaultFailBurst
	}
	if cfg.FailEvery <= 0 {
		cfg.FailEvery = DefaultFailEvery
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 2
	}
	if cfg.Port == "" {
		cfg.Port = "client"
	}
	v := &Verifier{users: users, cfg: cfg, sem: make(chan struct{}, cfg.Parallel),
		checking: map[[32]byte]*check{},
		throttle: NewThrottle(cfg.FailBurst, cfg.FailEvery, cfg.Port, cfg.Log)}
	v.logins = NewLoginCache[User]()
	return v
}

// Users is the verifier's table.
func (v *Verifier) Users() *Table { return v.users }

// Cached returns the user whose credentials these are if they logged
// in from remote's address before (LoginCache.Lookup): cheap, for an
// event loop.
func (v *Verifier) Cached(remote net.Addr, user, password []byte) (User, bool) {
	return v.logins.Lookup(addrIP(remote), user, password)
}

// Verify checks user and password, from the cache or with bcrypt (slow:
// never on an event loop). remote is the client's address: its failed
// attempts are throttled and logged with the user name, never the
// password. It returns the user, ErrDenied, ErrThrottled or ctx's error.
func (v *Verifier) Verify(ctx context.Context, remote net.Addr, user, password []byte) (User, error) {
	ip := addrIP(remote)
	if u, ok := v.logins.Lookup(ip, user, password); ok {
		return u, nil
	}
	k := v.logins.Key(ip, user, password)
	v.mu.Lock()
	if ch := v.checking[k]; ch != nil {
		v.mu.Unlock()
		select {
		case <-ch.done:
			return ch.user, ch.err
		case <-ctx.Done():
			return User{}, ctx.Err()
		}
	}
	ch := &check{done: make(chan struct{})}
	v.checking[k] = ch
	v.mu.Unlock()
	ch.user, ch.err = v.verify(ctx, remote, user, password)
	v.mu.Lock()
	delete(v.checking, k)
	v.mu.Unlock()
	close(ch.done)
	return ch.user, ch.err
}

// verify runs one check of user and password.
func (v *Verifier) verify(ctx context.Context, remote net.Addr, user, password []byte) (User, error) {
	ip := addrIP(remote)
	if !v.throttle.Reserve(ip) {
		return User{}, ErrThrottled
	}
	// Admitted: logged in from another address already (a client's
	// other host), or meanwhile, while this one waited for a slot (many
	// hosts at once to a new process): the check would say the same.
	if u, ok := v.logins.Admitted(ip, user, password); ok {
		v.throttle.Settle(ip, false)
		return u, nil
	}
	select {
	case v.sem <- struct{}{}:
	case <-ctx.Done():
		v.throttle.Settle(ip, false)
		return User{}, ctx.Err()
	}
	if u, ok := v.logins.Admitted(ip, user, password); ok {
		<-v.sem
		v.throttle.Settle(ip, false)
		return u, nil
	}
	v.checks.Add(1)
	u, known := v.users.Lookup(string(user))
	hash := []byte(u.Hash)
	if !known {
		// Unknown users cost a check too: the answer's delay does not
		// tell which names exist.
		hash = v.dummyHash()
	}
	err := bcrypt.CompareHashAndPassword(hash, password)
	<-v.sem
	if known && err == nil && len(password) <= MaxPassword {
		v.throttle.Settle(ip, false) // a success uses up no failure allowance
		v.logins.Remember(ip, user, password, u)
		return u, nil
	}
	v.throttle.Settle(ip, true)
	v.cfg.Log.Warn().Str("port", v.cfg.Port).Str("user", printable(user)).Str("remote", ip).
		Msg("authentication failed")
	return User{}, ErrDenied
}

func (v *Verifier) dummyHash() []byte {
	v.dummyOnce.Do(func() {
		cost := DefaultCost
		if us := v.users.Users(); len(us) > 0 {
			if c, err := bcrypt.Cost([]byte(us[0].Hash)); err == nil {
				cost = c
			}
		}
		var pw [16]byte
		_, _ = rand.Read(pw[:])
		v.dummy, _ = bcrypt.GenerateFromPassword(pw[:], cost)
	})
	return v.dummy
}

// addrIP is the IP of a remote address (its port changes per connection).
func addrIP(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return "unknown"
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// printable is a user name as logged: at most MaxUserName bytes, quoted
// when it holds anything but a valid name's characters.
func printable(b []byte) string {
	s := string(b[:min(len(b), MaxUserName)])
	if ValidName(s) != nil {
		s = fmt.Sprintf("%q", s)
	}
	if len(b) > MaxUserName {
		s += "…"
	}
	return s
}
