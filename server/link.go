package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"ftkv/internal/frameio"
	"ftkv/internal/netopt"
	"ftkv/internal/poll"
	"ftkv/internal/tlsgnet"
	"ftkv/wire"
)

// replLink is the ordered connection from a primary to its secondary.
//
// It is dialled and authenticated with the net package (dial timeouts),
// then enrolled into the server's client engine, so acknowledgements are
// read by an event loop and the answers to clients leave from it without
// any goroutine hop. Frames are appended to wbuf under the primary's lock,
// so in log order; one task on the link's event loop writes everything
// appended during a loop round in one system call.
type replLink struct {
	owner linkOwner
	log   zerolog.Logger
	gc    gnet.Conn
	loop  gnet.EventLoop
	dead  chan struct{}
	once  sync.Once

	mu          sync.Mutex
	wbuf        []byte
	spare       []byte
	flushQueued atomic.Bool
	// pingQueued: a ping waits in wbuf (under mu). pingSent is when the
	// oldest ping written since the secondary last sent anything was
	// written (mono; 0: none): the secondary's silence counts from there
	// (primary.linkHealth).
	pingQueued bool
	pingSent   atomic.Int64
	// probe is a descriptor of the link's socket of our own (gnet's
	// may be closed and its number reused at any time): linkHealth asks
	// the kernel through it whether the secondary's answers wait unread.
	probeMu sync.RWMutex
	probe   int
}

// linkOwner is told what arrives on a link: the primary that dialled it.
// Calls come from the link's event loop, except linkFailed.
type linkOwner interface {
	acked(idx uint64, loop gnet.EventLoop) // the secondary applied everything up to idx
	pingAcked(seq uint64)                  // answer to ping seq
	seedAcked(l *replLink, seq uint64)     // answer on l to SEED frame seq
	linkFailed(l *replLink)                // l is closed; replace it
}

// errLinkRefused: the secondary answered the link's HELLO with a refusal
// (it does not have the view naming this primary yet, say).
var errLinkRefused = errors.New("secondary refused link")

// dialLink connects and authenticates the link of shard to addr at epoch
// for owner; it returns the link (not yet carrying traffic), the highest
// log index the secondary already holds from this primary incarnation
// (base is the one this primary starts from), the highest it
// acknowledges (lower with fsync_secondary: the rest is acknowledged on
// the link once synced), and the flags of its answer (FlagFullSeed,
// FlagResync).
func dialLink(ctx context.Context, env *primaryEnv, owner linkOwner, log zerolog.Logger, shard int, addr string, epoch, base uint64) (*replLink, uint64, uint64, uint8, error) {
	tcp, err := netopt.Dialer(env.tm.Dial).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	// ctx ending cuts the handshake short too (the deadline below
	// bounds it otherwise).
	stop := context.AfterFunc(ctx, func() { _ = tcp.SetDeadline(time.Now()) })
	// With TLS the session is established here and moves into the event
	// loop with the connection (tlsgnet.Handoff).
	nc, regCtx := net.Conn(tcp), func(l *replLink) any { return l }
	if t := env.srv.tls; t != nil {
		ho := tlsgnet.Client(tcp, t.toPeer)
		nc, regCtx = ho, func(l *replLink) any { return ho.Context(l) }
	}
	hello := wire.Append(nil, &wire.Frame{Op: wire.OpReplHello, Epoch: epoch, Client: uint64(env.id),
		Seq: uint64(shard), Floor: env.inc, Value: []byte(env.secret),
		Aux: binary.BigEndian.AppendUint64(nil, base)})
	_ = nc.SetDeadline(time.Now().Add(env.tm.Handshake))
	if _, err := nc.Write(hello); err != nil {
		nc.Close()
		return nil, 0, 0, 0, err
	}
	f, err := readFrame(bufio.NewReaderSize(nc, 4096))
	if err != nil {
		nc.Close()
		return nil, 0, 0, 0, err
	}
	if !stop() {
		nc.Close() // (the connection's deadline is ctx's now)
		return nil, 0, 0, 0, ctx.Err()
	}
	if f.Status != wire.StatusOK {
		nc.Close()
		return nil, 0, 0, 0, fmt.Errorf("%w: %s %s", errLinkRefused, f.Status, f.Value)
	}
	_ = nc.SetDeadline(time.Time{})
	l := &replLink{owner: owner, log: log, dead: make(chan struct{}), probe: -1}
	if l.probe, err = dupFD(tcp); err != nil {
		nc.Close()
		return nil, 0, 0, 0, err
	}
	eng := env.engine()
	gctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), regCtx(l)), tcp)
	resc, err := eng.Register(gctx)
	if err != nil {
		nc.Close()
		l.close()
		return nil, 0, 0, 0, err
	}
	select {
	case res := <-resc:
		if res.Err != nil {
			l.close()
			return nil, 0, 0, 0, res.Err
		}
		// The connection is the one OnOpen gave (enrolled): res.Conn may
		// be closed and released by its loop already (a race the
		// detector caught when a secondary died as its link enrolled).
		l.mu.Lock()
		opened := l.gc != nil
		l.mu.Unlock()
		if !opened {
			l.close()
			return nil, 0, 0, 0, fmt.Errorf("the link to %s closed as it was enrolled", addr)
		}
	case <-time.After(env.tm.Handshake):
		l.close()
		return nil, 0, 0, 0, fmt.Errorf("enrolling the link to %s timed out", addr)
	}
	return l, f.Seq, f.Floor, f.Flags, nil
}

// dupFD returns a descriptor of nc's socket of the caller's own.
func dupFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T has no descriptor", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// answerWaiting reports whether bytes from the secondary wait in the
// kernel, not read yet by the link's loop. Any goroutine.
func (l *replLink) answerWaiting() bool {
	l.probeMu.RLock()
	defer l.probeMu.RUnlock()
	if l.probe < 0 {
		return false
	}
	n, err := unix.IoctlGetInt(l.probe, unix.SIOCINQ)
	return err == nil && n > 0
}

// enrolled records the connection the link's handler sees (the TLS
// wrapper, if any) and its loop; called by OnOpen, on that loop, before
// Register's result reaches dialLink. It reports false, recording
// nothing, when the link is closed already (dialLink timed out waiting
// for it): the caller closes the connection. (close closes l.dead before
// it reads l.gc under l.mu, so one of the two closes a late connection.)
func (l *replLink) enrolled(c gnet.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken() {
		return false
	}
	l.gc, l.loop = c, c.EventLoop()
	return true
}

// flushSoon schedules a flush on the link's event loop unless one is
// already queued. It never blocks and may be called from any goroutine.
func (l *replLink) flushSoon() {
	if !l.flushQueued.CompareAndSwap(false, true) {
		return
	}
	err := l.loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		l.flushQueued.Store(false)
		l.flushOnLoop()
		return nil
	}))
	if err != nil {
		l.flushQueued.Store(false)
		l.fail(err)
	}
}

// flushOnLoop runs on the link's event loop; gnet buffers what the socket
// does not take at once.
func (l *replLink) flushOnLoop() {
	l.mu.Lock()
	buf := l.wbuf
	l.wbuf = l.spare[:0]
	l.spare = nil
	ping := l.pingQueued
	l.pingQueued = false
	l.mu.Unlock()
	if len(buf) == 0 || l.broken() {
		// A closed link's frames must not reach the socket that now has
		// its descriptor number (writeOnLoop): its sender learns of the
		// loss from l.dead and starts again on the next link.
		return
	}
	err := writeOnLoop(l.gc, buf)
	if err != nil {
		l.fail(err)
		return
	}
	if ping {
		l.pingSent.CompareAndSwap(0, mono(time.Now()))
	}
	if cap(buf) <= 8<<20 {
		l.mu.Lock()
		if l.spare == nil {
			l.spare = buf
		}
		l.mu.Unlock()
	}
}

// queue appends frames to the link; the caller holds the primary's lock.
func (l *replLink) queue(frames []byte) {
	l.mu.Lock()
	l.wbuf = append(l.wbuf, frames...)
	l.mu.Unlock()
}

// queuePing appends a ping; the caller holds the primary's lock.
func (l *replLink) queuePing(seq uint64) {
	l.mu.Lock()
	l.wbuf = wire.Append(l.wbuf, &wire.Frame{Op: wire.OpPing, ID: seq})
	l.pingQueued = true
	l.mu.Unlock()
}

// queueFrame encodes f straight into the link's buffer.
func (l *replLink) queueFrame(f *wire.Frame) {
	l.mu.Lock()
	l.wbuf = wire.Append(l.wbuf, f)
	l.mu.Unlock()
}

// queueRepl encodes e's REPL frame at epoch straight into the link's
// buffer; the caller holds the primary's lock.
func (l *replLink) queueRepl(e *entry, epoch uint64) {
	l.mu.Lock()
	l.wbuf = appendRepl(l.wbuf, e, epoch)
	l.mu.Unlock()
}

// onTraffic handles acknowledgements on the link's event loop.
func (l *replLink) onTraffic(c gnet.Conn) gnet.Action {
	l.pingSent.Store(0) // the secondary sent something: not silent
	var acked uint64
	var bad error
	action := decodeAll(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if f.Op != wire.OpReplAck || f.Status != wire.StatusOK {
			bad = fmt.Errorf("secondary answered %s %s: %s", f.Op, f.Status, f.Value)
			return out, gnet.Close
		}
		if f.ID > acked {
			acked = f.ID
		}
		switch {
		case f.Flags&wire.FlagPing != 0:
			l.owner.pingAcked(f.Seq)
		case f.Flags&wire.FlagSeed != 0:
			l.owner.seedAcked(l, f.Seq)
		}
		return out, gnet.None
	})
	if acked > 0 {
		l.owner.acked(acked, l.loop)
	}
	if bad != nil {
		l.log.Error().Err(bad).Msg("secondary refused replication")
	}
	return action
}

// fail closes the link and lets the primary reconnect.
func (l *replLink) fail(err error) {
	if l.broken() {
		return
	}
	l.log.Error().Err(err).Msg("replication link failed; reconnecting")
	l.close()
	l.owner.linkFailed(l)
}

func (l *replLink) close() {
	l.once.Do(func() {
		close(l.dead)
		l.mu.Lock()
		gc := l.gc // nil when it closed before dialLink stored it
		l.mu.Unlock()
		if gc != nil {
			_ = gc.Close()
		}
		l.probeMu.Lock()
		if l.probe >= 0 {
			_ = unix.Close(l.probe)
			l.probe = -1
		}
		l.probeMu.Unlock()
	})
}

func (l *replLink) broken() bool {
	select {
	case <-l.dead:
		return true
	default:
		return false
	}
}

func readFrame(br *bufio.Reader) (wire.Frame, error) { return frameio.ReadFrame(br) }

// linkDialed, when a test sets it, runs after a replication link's HELLO
// for shard was answered and before the link is used: it widens the
// window in which writes may commit meanwhile, or makes a reconnect slow.
var linkDialed atomic.Pointer[func(shard int)]

// connect (re)establishes the replication link to sec (none: addr "") at
// epoch, retrying until timeout (the secondary may not have the view yet)
// or, between attempts, until superseded (if not nil) says so.
func (p *primary) connect(sec target, epoch uint64, timeout time.Duration, superseded func() bool) error {
	if p.sameSecondary(sec) {
		p.mu.Lock()
		p.epoch = epoch
		p.mu.Unlock()
		return nil
	}
	p.mu.Lock()
	p.connecting++
	p.mu.Unlock()
	full, err := p.connectLink(sec, epoch, timeout, superseded)
	p.mu.Lock()
	p.connecting--
	if err != nil && p.connecting == 0 {
		// Only the last attempt giving up leaves the link down: a view's
		// attempt overtaken by a newer one says nothing of a reconnect
		// still under way.
		p.connectFails++
	}
	p.mu.Unlock()
	if err != nil || !full {
		return err
	}
	// The view is applied once the copy is whole: until then it must not
	// count as a secondary that could be promoted.
	p.startSeed(sec)
	if err := p.seedResult(sec.inc, p.tm.SeedLimit); err != nil {
		return fmt.Errorf("re-seeding the secondary's differing copy: %w", err)
	}
	p.log.Info().Str("secondary", sec.addr).Msg("the secondary's copy re-seeded in full")
	return nil
}

// connectLink is connect's work once the link has to be (re)dialled; it
// reports whether the secondary asked for a full re-seeding.
func (p *primary) connectLink(sec target, epoch uint64, timeout time.Duration, superseded func() bool) (bool, error) {
	p.mu.Lock()
	old := p.link
	p.setLinkLocked(nil)
	if p.sec.addr != sec.addr || p.sec.id != sec.id || p.sec.inc != sec.inc {
		p.heard.Store(mono(time.Now())) // a new secondary: its silence counts from now
		// A secondary (even an incarnation seeded here before, dropped
		// and made the secondary again) resets its copy for a new link:
		// no earlier re-seeding or resync stands for this one.
		p.seedJob, p.resyncInc = nil, 0
	}
	p.setSecLocked(sec)
	p.epoch = epoch
	// While the link is down, writes stay in flight (unacknowledged) and
	// are sent when it is back; only a shard without a secondary commits
	// alone.
	p.waitLink = sec.addr != ""
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
	if sec.addr == "" {
		p.mu.Lock()
		last := p.nextIndex
		p.mu.Unlock()
		p.commitUpTo(last, nil)
		return false, nil
	}
	deadline := time.Now().Add(timeout)
	backoff := p.tm.RetryMin
	refused := 0
	for {
		select {
		case <-p.stop:
			return false, errors.New("no longer primary")
		default:
		}
		p.mu.Lock()
		base := p.committed
		p.mu.Unlock()
		var l *replLink
		var acked, synced uint64
		var flags uint8
		err := errTestCut
		if !replCut(p.env.id, sec) {
			l, acked, synced, flags, err = p.dialUnlessSuperseded(sec.addr, epoch, base, superseded)
		}
		if hook := linkDialed.Load(); err == nil && hook != nil {
			(*hook)(p.shard)
		}
		if err == nil {
			full := flags&wire.FlagFullSeed != 0
			var buf []byte
			p.settingUp.Store(true)
			if flags&wire.FlagResync != 0 {
				// Locks p.mu; buf starts with the writes after its copy
				// from our log, or with the reset of a full re-seeding.
				buf, acked = p.resyncOrReset(sec, acked)
			} else {
				p.mu.Lock()
			}
			p.answered.Store(true) // it answered the link's HELLO
			p.settingUp.Store(false)
			if l.broken() {
				// Closed as it was enrolled (the secondary died at once):
				// its failure reached no reconnect; dial again.
				p.mu.Unlock()
				err = errors.New("replication link closed as it was set up")
				goto retry
			}
			// Resend what the secondary has not applied yet, in order,
			// ahead of anything sequenced from now on.
			for _, e := range p.inflight {
				if e.index > acked {
					buf = appendRepl(buf, e, p.epoch)
				}
			}
			if flags&wire.FlagResync != 0 {
				synced = 0 // its copy's index is not an acknowledgement of ours
			}
			l.queue(buf)
			p.setLinkLocked(l)
			p.mu.Unlock()
			l.flushSoon()
			if synced = min(synced, acked); synced > 0 {
				p.commitUpTo(synced, nil)
			}
			p.log.Info().Str("secondary", sec.addr).Uint64("epoch", epoch).Msg("replication link up")
			return full, nil
		}
	retry:
		if errors.Is(err, errLinkRefused) {
			// It answered: reachable, only not ready for this link (its
			// view lags); link health reports an unreachable secondary.
			p.answered.Store(true)
		}
		// A secondary named in a view was listening when it was named:
		// "connection refused" means it died; do not hold the view up.
		if errors.Is(err, syscall.ECONNREFUSED) {
			refused++
		}
		if time.Now().After(deadline) || refused >= 3 {
			return false, fmt.Errorf("replication link to %s: %w", sec.addr, err)
		}
		if superseded != nil && superseded() {
			return false, fmt.Errorf("replication link to %s: a newer view arrived: %w", sec.addr, err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, p.tm.RetryMax)
	}
}

// dialUnlessSuperseded is dialLink, given up as soon as superseded says
// a newer view arrived: a dial to a secondary behind a partition waits
// out its timeout, and the shard's writes with it, while the newer view
// (the coordinator dropping that secondary) already waits to be applied
// (a review's lasting cut: two dial timeouts per try).
func (p *primary) dialUnlessSuperseded(addr string, epoch, base uint64, superseded func() bool) (*replLink, uint64, uint64, uint8, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if superseded != nil {
		go poll.CancelWhen(ctx, cancel, p.tm.Poll, superseded)
	}
	return dialLink(ctx, p.env, p, p.log, p.shard, addr, epoch, base)
}

// reconnect replaces a failed link while the view stays the same.
func (p *primary) reconnect(failed *replLink) {
	p.mu.Lock()
	if p.link != failed {
		p.mu.Unlock()
		return
	}
	sec, epoch := p.sec, p.epoch
	p.mu.Unlock()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		p.mu.Lock()
		moved := p.sec != sec || (p.link != nil && p.link != failed)
		p.mu.Unlock()
		if moved {
			return // a newer view chose the secondary
		}
		if err := p.connect(sec, epoch, p.tm.Handshake, nil); err == nil {
			return
		}
		p.log.Warn().Str("secondary", sec.addr).Msg("secondary unreachable; writes wait")
		time.Sleep(p.tm.Heartbeat)
	}
}
