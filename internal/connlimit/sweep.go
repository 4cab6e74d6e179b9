package connlimit

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// loopSet is the connections of one event loop. all and watch are touched
// on that loop only (OnOpen, OnClose, OnTraffic and the sweep tasks).
type loopSet struct {
	loop     gnet.EventLoop
	all      map[*State]struct{}
	watch    []*State     // paused or holding output
	nwatch   atomic.Int32 // len(watch), for the sweeper
	queued   atomic.Bool  // a sweep task is queued on the loop
	lastFull int64        // sweeper only
	wakes    int          // wakes queued on the loop and not run yet (on the loop)
	wakeRan  gnet.AsyncCallback
	epfd     int // the loop's epoll descriptor (-1: unknown; readoff.go)
}

// loopSet returns the set of loop, creating it on first use.
func (p *Port) loopSet(loop gnet.EventLoop) *loopSet {
	p.mu.Lock()
	defer p.mu.Unlock()
	ls := p.loops[loop]
	if ls == nil {
		ls = &loopSet{loop: loop, all: make(map[*State]struct{}), epfd: pollFD(loop)}
		ls.wakeRan = func(gnet.Conn, error) error {
			ls.wakes--
			return nil
		}
		p.loops[loop] = ls
	}
	return ls
}

// watch puts st in its loop's watch list (on st's loop).
func (p *Port) watch(st *State) {
	if st.watched || st.gone {
		return
	}
	st.watched = true
	ls := p.loopSet(st.c.EventLoop())
	ls.watch = append(ls.watch, st)
	if ls.nwatch.Add(1) == 1 {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// maxWakes bounds the wakes queued on a loop and not run yet. A wake is a
// task in the loop's queue, run in order with the others (the replication
// link's flushes among them): 1,000 connections paused for the output
// budget, woken all at once each time it fell under, queued the link's
// flushes behind them (the link's loop did not flush for 631 ms, and the
// coordinator failed the secondary: "cannot replicate to it"). Bounded
// per sweep only (64), a sweep every fastSweep queued wakes of 500
// connections that never read, each of which wrote an answer of 1 MiB:
// a flush queued behind them waited up to 1.2 s, and an honest write to
// that server timed out after 2 s.
const maxWakes = 32

// sweeper visits the watched connections every fastSweep while there are
// any, and every connection every slowSweep, on their loops.
func (p *Port) sweeper() {
	t := time.NewTimer(slowSweep)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-p.kick:
		case <-t.C:
		}
		now := time.Now().UnixNano()
		p.now.Store(now)
		p.mu.Lock()
		sets := make([]*loopSet, 0, len(p.loops))
		for _, ls := range p.loops {
			sets = append(sets, ls)
		}
		p.mu.Unlock()
		busy := false
		for _, ls := range sets {
			full := time.Duration(now-ls.lastFull) >= slowSweep
			if ls.nwatch.Load() > 0 {
				busy = true
			} else if !full {
				continue
			}
			if !ls.queued.CompareAndSwap(false, true) {
				continue
			}
			if full {
				ls.lastFull = now
			}
			err := ls.loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				ls.queued.Store(false)
				p.sweep(ls, now, full)
				return nil
			}))
			if err != nil {
				ls.queued.Store(false)
			}
		}
		d := slowSweep
		if busy {
			d = fastSweep
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(d)
	}
}

// sweep runs on ls's loop: timeouts of every connection (full), limits of
// the watched ones, and a wake for the paused ones that may read again.
func (p *Port) sweep(ls *loopSet, now int64, full bool) {
	cfg := &p.cfg
	if full {
		for st := range ls.all {
			switch {
			case st.killed:
			case cfg.RequireAuth && cfg.AuthTimeout > 0 && !st.authed.Load() &&
				time.Duration(now-max(st.opened, st.deauthAt.Load())) > cfg.AuthTimeout:
				st.kill(errAuthTimeout)
				_ = st.c.Close()
			case cfg.FrameTimeout > 0 && st.partialSince != 0 && !st.paused && !st.holding &&
				time.Duration(now-st.partialSince) > cfg.FrameTimeout:
				st.kill(errFrameTimeout)
				_ = st.c.Close()
			case cfg.IdleTimeout > 0 && st.out == 0 && st.inflight.Load() == 0 && !st.paused &&
				time.Duration(now-st.lastRead) > cfg.IdleTimeout+slowSweep:
				// (lastRead is the coarse clock, up to slowSweep old: the
				// margin keeps a connection from closing early.)
				st.kill(errIdleTimeout)
				_ = st.c.Close()
			}
		}
	}
	kept := ls.watch[:0]
	var woken []*State
	inputWakes := 0
	for _, st := range ls.watch {
		if st.gone || st.killed {
			st.watched = false
			continue
		}
		if st.paused || st.heldSince != 0 || st.holder {
			st.sampleSendQueue(now)
		}
		if st.note(now) != gnet.None {
			_ = st.c.Close()
			st.watched = false
			continue
		}
		if st.paused && !st.woken && ls.wakes < maxWakes && (!st.inputHeld || inputWakes == 0) && !st.blocked(0) &&
			(!st.budgetHeld || st.inflight.Load() == 0 || !cfg.Inflight.above(3, 4)) {
			// (Waiting for the input budget: one a sweep, or each
			// would read once more at every dip under half of it, and
			// together they passed the budget: holdBack.)
			if st.inputHeld {
				inputWakes++
			}
			// (Paused for the Inflight budget: woken once it is down
			// to three quarters, not at each answer, when every
			// connection paused for it would read a request and pause
			// again. Paused for its own limits only: at once.)
			st.woken = true
			ls.wakes++
			if st.c.Wake(ls.wakeRan) != nil {
				// (gnet may have queued the task all the same: its
				// callback is what counts it out.)
				st.woken = false
			}
			woken = append(woken, st)
			continue
		}
		if !st.paused && st.out == 0 {
			st.watched = false
			continue
		}
		kept = append(kept, st)
	}
	// Those woken go to the end: the next sweep wakes the others first.
	kept = append(kept, woken...)
	clear(ls.watch[len(kept):])
	ls.watch = kept
	ls.nwatch.Store(int32(len(kept)))
}
