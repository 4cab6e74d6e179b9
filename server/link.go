package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/frameio"
	"ftkv/internal/netopt"
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
	p    *primary
	gc   gnet.Conn
	loop gnet.EventLoop
	dead chan struct{}
	once sync.Once

	mu          sync.Mutex
	wbuf        []byte
	spare       []byte
	flushQueued atomic.Bool
}

// dialLink connects and authenticates; it returns the link (not yet
// carrying traffic) and the highest log index the secondary already holds
// from this primary incarnation.
func dialLink(p *primary, addr string, epoch, base uint64) (*replLink, uint64, error) {
	s := p.s
	nc, err := netopt.Dialer(s.cfg.Timing.Dial).Dial("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	hello := wire.Append(nil, &wire.Frame{Op: wire.OpReplHello, Epoch: epoch, Client: uint64(s.cfg.ID),
		Seq: uint64(p.shard), Floor: s.cfg.Incarnation, Value: []byte(s.cfg.Secret),
		Aux: binary.BigEndian.AppendUint64(nil, base)})
	_ = nc.SetDeadline(time.Now().Add(s.cfg.Timing.Handshake))
	if _, err := nc.Write(hello); err != nil {
		nc.Close()
		return nil, 0, err
	}
	f, err := readFrame(bufio.NewReaderSize(nc, 4096))
	if err != nil {
		nc.Close()
		return nil, 0, err
	}
	if f.Status != wire.StatusOK {
		nc.Close()
		return nil, 0, fmt.Errorf("secondary refused link: %s %s", f.Status, f.Value)
	}
	_ = nc.SetDeadline(time.Time{})
	l := &replLink{p: p, dead: make(chan struct{})}
	eng := s.clientEngine()
	ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), l), nc)
	resc, err := eng.Register(ctx)
	if err != nil {
		nc.Close()
		return nil, 0, err
	}
	select {
	case res := <-resc:
		if res.Err != nil {
			return nil, 0, res.Err
		}
		l.gc = res.Conn
		l.loop = res.Conn.EventLoop()
	case <-time.After(s.cfg.Timing.Handshake):
		return nil, 0, fmt.Errorf("enrolling the link to %s timed out", addr)
	}
	return l, f.Seq, nil
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
	l.mu.Unlock()
	if len(buf) == 0 {
		return
	}
	_, err := l.gc.Write(buf) // gnet keeps a copy of what the socket did not take
	if err != nil {
		l.fail(err)
		return
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

// queueFrame encodes f straight into the link's buffer.
func (l *replLink) queueFrame(f *wire.Frame) {
	l.mu.Lock()
	l.wbuf = wire.Append(l.wbuf, f)
	l.mu.Unlock()
}

// queueRepl encodes e's REPL frame straight into the link's buffer; the
// caller holds the primary's lock.
func (l *replLink) queueRepl(p *primary, e *entry) {
	l.mu.Lock()
	l.wbuf = p.appendRepl(l.wbuf, e)
	l.mu.Unlock()
}

// onTraffic handles acknowledgements on the link's event loop.
func (l *replLink) onTraffic(c gnet.Conn) gnet.Action {
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
			l.p.onPingAck(f.Seq)
		case f.Flags&wire.FlagSeed != 0:
			l.p.onSeedAck(f.Seq)
		}
		return out, gnet.None
	})
	if acked > 0 {
		l.p.commitUpTo(acked, l.loop)
	}
	if bad != nil {
		l.p.log.Error().Err(bad).Msg("secondary refused replication")
	}
	return action
}

// fail closes the link and lets the primary reconnect.
func (l *replLink) fail(err error) {
	if l.broken() {
		return
	}
	l.p.log.Error().Err(err).Msg("replication link failed; reconnecting")
	l.close()
	go l.p.reconnect(l)
}

func (l *replLink) close() {
	l.once.Do(func() {
		close(l.dead)
		if l.gc != nil {
			_ = l.gc.Close()
		}
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

// replyBatch collects answers per connection so each connection gets one
// write per batch instead of one per answer. Batches and their buffers are
// reused (newReplyBatch, release): a busy server answers without
// allocating.
type replyBatch struct {
	conns []gnet.Conn
	bufs  [][]byte
	index map[gnet.Conn]int // once there are many connections
}

const replyBatchScan = 16 // connections searched linearly before indexing

var replyBatchPool = sync.Pool{New: func() any { return new(replyBatch) }}

func newReplyBatch() *replyBatch { return replyBatchPool.Get().(*replyBatch) }

func (rb *replyBatch) add(c gnet.Conn, f *wire.Frame) {
	if c == nil {
		return
	}
	i := rb.find(c)
	if i < 0 {
		i = len(rb.conns)
		rb.conns = append(rb.conns, c)
		if i < cap(rb.bufs) {
			rb.bufs = rb.bufs[:i+1]
			rb.bufs[i] = rb.bufs[i][:0]
		} else {
			rb.bufs = append(rb.bufs, nil)
		}
		if rb.index != nil {
			rb.index[c] = i
		} else if i >= replyBatchScan {
			rb.index = make(map[gnet.Conn]int, 2*i)
			for j, c := range rb.conns {
				rb.index[c] = j
			}
		}
	}
	rb.bufs[i] = wire.Append(rb.bufs[i], f)
}

func (rb *replyBatch) find(c gnet.Conn) int {
	if rb.index != nil {
		if i, ok := rb.index[c]; ok {
			return i
		}
		return -1
	}
	for i := len(rb.conns) - 1; i >= 0; i-- {
		if rb.conns[i] == c {
			return i
		}
	}
	return -1
}

// flush writes the answers: directly for connections of loop (the event
// loop the caller runs on, or nil), through AsyncWrite for the others
// (which keeps the buffer: it is not reused).
func (rb *replyBatch) flush(loop gnet.EventLoop) {
	for i, c := range rb.conns {
		b := rb.bufs[i]
		if loop != nil && c.EventLoop() == loop {
			_, _ = c.Write(b) // gnet copies what the socket does not take
		} else {
			_ = c.AsyncWrite(b, nil)
			rb.bufs[i] = nil
		}
	}
}

// release empties rb and returns it to the pool.
func (rb *replyBatch) release() {
	clear(rb.conns)
	rb.conns = rb.conns[:0]
	for i, b := range rb.bufs {
		if cap(b) > 64<<10 {
			rb.bufs[i] = nil
		}
	}
	rb.bufs = rb.bufs[:0]
	rb.index = nil
	replyBatchPool.Put(rb)
}
