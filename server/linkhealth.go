package server

import (
	"time"

	"ftkv/wire"
)

// Link health: a primary whose secondary does not answer (a partition
// between the two, both still reaching the coordinator) cannot commit
// anything, since a write waits for the secondary's acknowledgement, and
// its heartbeats keep its lease: nothing would ever fail over. So each
// heartbeat lists the shards this server leads whose secondary has been
// silent for more than two ping periods (a healthy link answers every
// ping), with how long; the coordinator fails a secondary its primary
// cannot reach for longer than the failure timeout (coord/decide/rules.go),
// and the primary, told it has no secondary, commits alone.

// linkReports lists the links of the shards this server leads whose
// secondary has not answered for more than two ping periods at now.
func (s *Server) linkReports(now time.Time) []wire.LinkHealth {
	prims := s.primaries()
	var out []wire.LinkHealth
	for _, p := range prims {
		if h, ok := p.linkHealth(now); ok && h.Stalled > 2*s.cfg.Timing.Ping {
			out = append(out, h)
		}
	}
	return out
}

// linkHealth reports how long p's secondary has not answered at now (ok
// false: p has no secondary, or no longer leads the shard). It does not
// take p's lock: a write path stalled for 1.2 s under writes of 1 MiB
// values (the garbage collector on a busy machine) held it, the report
// waited, and the server fell silent as if wedged
// (TestHeartbeatNotHeldByPrimaryLock).
func (p *primary) linkHealth(now time.Time) (h wire.LinkHealth, ok bool) {
	sec := p.secNow.Load()
	if p.closedNow.Load() || sec == nil || sec.addr == "" {
		return h, false
	}
	h = wire.LinkHealth{Shard: uint32(p.shard), Secondary: sec.id, Incarnation: sec.inc}
	// While the link is up, the secondary is silent from the write of
	// the oldest ping it has not answered, and answers that wait in the
	// kernel for the link's loop count: a loop that does not run (a busy
	// machine's CPU elsewhere, TestLinkStallNotBlamedWhileLoopStarved) or
	// that runs late, each round spent on many other connections
	// (TestLinkStallNotBlamedWhileLoopBusy: 1,000 clients that never
	// read, rounds of up to 0.9 s, a secondary failed for it) reads no
	// answer, and the secondary is not to blame. A link that is down
	// counts from the last answer.
	if l := p.linkNow.Load(); l != nil && !l.broken() {
		if sent := l.pingSent.Load(); sent != 0 && !l.answerWaiting() {
			h.Stalled = max(time.Duration(mono(now)-sent), 0)
		}
		return h, true
	}
	heard := p.heard.Load()
	if p.answered.Load() || p.settingUp.Load() {
		// An answer since the pinger last looked, or a link set up
		// after the secondary answered its HELLO (a partial resync
		// reading our log: the coordinator counts a re-seeding
		// secondary's report made before the view is applied, and
		// would fail it for our read).
		heard = mono(now)
	}
	h.Stalled = max(time.Duration(mono(now)-heard), 0)
	return h, true
}
