package auth

import (
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Throttle bounds failed logins per remote address (its IP): a token
// bucket of Burst failures refilled one per Every. A check in progress
// holds a token (Reserve) and a failure spends it (Settle); without a
// free token an attempt is refused before any password is checked. At
// most 4096 addresses are remembered, idle ones forgotten first. It is
// safe for concurrent use.
type Throttle struct {
	burst int
	every time.Duration
	port  string
	log   zerolog.Logger

	mu    sync.Mutex
	addrs map[string]*addrState
}

// addrState is one address's allowance (tokens as of at).
type addrState struct {
	tokens  float64
	at      time.Time
	pending int
	logged  time.Time // last "throttled" log line
}

// NewThrottle allows burst failures at once (0: DefaultFailBurst), then
// one per every (0: DefaultFailEvery); refusals are logged on log, once a
// second per address, naming port.
func NewThrottle(burst int, every time.Duration, port string, log zerolog.Logger) *Throttle {
	if burst <= 0 {
		burst = DefaultFailBurst
	}
	if every <= 0 {
		every = DefaultFailEvery
	}
	return &Throttle{burst: burst, every: every, port: port, log: log, addrs: map[string]*addrState{}}
}

func (t *Throttle) refill(a *addrState, now time.Time) {
	a.tokens = min(float64(t.burst), a.tokens+float64(now.Sub(a.at))/float64(t.every))
	a.at = now
}

// Reserve holds one failure allowance of ip for a check; false when none
// is left (the attempt must be refused unchecked).
func (t *Throttle) Reserve(ip string) bool {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.addrs[ip]
	if a == nil {
		if len(t.addrs) >= maxAddrs {
			t.forgetIdle(now)
		}
		a = &addrState{tokens: float64(t.burst), at: now}
		t.addrs[ip] = a
	}
	t.refill(a, now)
	if a.tokens-float64(a.pending) < 1 {
		if now.Sub(a.logged) >= time.Second {
			a.logged = now
			t.log.Warn().Str("port", t.port).Str("remote", ip).
				Msg("authentication attempts throttled: too many failures from this address")
		}
		return false
	}
	a.pending++
	return true
}

// Settle ends a check Reserve admitted: a failure spends its allowance.
func (t *Throttle) Settle(ip string, failed bool) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.addrs[ip]
	if a == nil {
		return // forgotten meanwhile
	}
	a.pending--
	t.refill(a, now)
	if failed {
		a.tokens--
	}
}

// forgetIdle drops addresses whose allowance is whole again, or any ones
// if too few are (t.mu held).
func (t *Throttle) forgetIdle(now time.Time) {
	for ip, a := range t.addrs {
		t.refill(a, now)
		if a.pending == 0 && a.tokens >= float64(t.burst) {
			delete(t.addrs, ip)
		}
	}
	for ip := range t.addrs {
		if len(t.addrs) < maxAddrs {
			break
		}
		delete(t.addrs, ip)
	}
}

func (t *Throttle) remembered() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.addrs)
}

// IP is the address a Throttle counts a remote address's failures under.
func IP(a net.Addr) string { return addrIP(a) }
