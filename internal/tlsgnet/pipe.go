package tlsgnet

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// directWrites lets the loop write ciphertext with gnet's Write when
// nothing is queued ahead (see flush); off, everything goes through
// AsyncWrite (for measurements).
var directWrites = true

// errWouldBlock is what the transport's Read returns when no ciphertext is
// buffered after the handshake. crypto/tls (Conn.readRecordOrCCS) does not
// make a temporary net.Error sticky: the connection stays usable and a
// partially read record stays in its input buffer.
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlsgnet: no ciphertext buffered" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

// pipeConn is the net.Conn under a tls.Conn: ciphertext in from gnet's
// inbound buffer, ciphertext out through the real gnet connection.
//
// Reads: during a server handshake (blocking) Read waits until OnTraffic
// has fed bytes (feed) or the transport is closed. After it, Read takes
// what feed left, then reads from src, gnet's connection, which OnTraffic
// sets while it decrypts on the loop; with nothing left it returns
// errWouldBlock.
//
// Writes are serialized by wmu. The records of one tls.Conn.Write made
// for the wrapped handler are gathered (collect) and leave in one piece
// (flush); records crypto/tls writes on its own (the handshake, alerts,
// KeyUpdate answers) leave at once with AsyncWrite. Either way in the order
// tls produced them.
//
// A Handoff transport (nc set) reads and writes nc until it is adopted by
// an event loop.
type pipeConn struct {
	local, remote net.Addr

	mu       sync.Mutex
	cond     sync.Cond
	in       []byte // fed ciphertext not yet read
	blocking bool
	closed   bool
	src      gnet.Conn
	nc       net.Conn // Handoff: the dialled connection until adoption

	wmu        sync.Mutex
	real       gnet.Conn
	collecting bool         // Write gathers records in out (see collect)
	out        []byte       // gathered records
	queued     atomic.Int64 // ciphertext bytes in AsyncWrite, not yet written
	asyncs     atomic.Int64 // AsyncWrite calls whose callback has not run
	wclosed    atomic.Bool  // no wmu: gnet may call OnClose inside real.Write
}

func newPipe(real gnet.Conn, blocking bool) *pipeConn {
	p := &pipeConn{real: real, blocking: blocking}
	if real != nil {
		p.local, p.remote = real.LocalAddr(), real.RemoteAddr()
	}
	p.cond.L = &p.mu
	return p
}

// feed appends ciphertext read by the loop (copied: gnet reuses its buffer).
func (p *pipeConn) feed(b []byte) {
	p.mu.Lock()
	if !p.closed {
		p.in = append(p.in, b...)
		p.cond.Broadcast()
	}
	p.mu.Unlock()
}

// setSrc sets (or clears) the gnet connection Read may take ciphertext from.
func (p *pipeConn) setSrc(c gnet.Conn) {
	p.mu.Lock()
	p.src = c
	p.mu.Unlock()
}

// unblock makes Read return errWouldBlock instead of waiting.
func (p *pipeConn) unblock() {
	p.mu.Lock()
	p.blocking = false
	p.mu.Unlock()
}

func (p *pipeConn) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.nc != nil {
			nc := p.nc
			p.mu.Unlock()
			n, err := nc.Read(b)
			p.mu.Lock()
			return n, err
		}
		if p.closed {
			return 0, net.ErrClosed
		}
		if len(p.in) > 0 {
			n := copy(b, p.in)
			p.in = p.in[n:]
			if len(p.in) == 0 {
				p.in = nil
			}
			return n, nil
		}
		if p.src != nil && len(b) > 0 {
			if n, _ := p.src.Read(b); n > 0 {
				return n, nil
			}
		}
		if !p.blocking {
			return 0, errWouldBlock
		}
		p.cond.Wait()
	}
}

func (p *pipeConn) Write(b []byte) (int, error) {
	p.mu.Lock()
	nc := p.nc
	p.mu.Unlock()
	if nc != nil {
		return nc.Write(b)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.wclosed.Load() {
		return 0, net.ErrClosed
	}
	if p.collecting {
		p.out = append(p.out, b...)
		return len(b), nil
	}
	// The handshake, or a record crypto/tls writes on its own (an alert,
	// a KeyUpdate answer): a copy, since tls reuses b.
	if err := p.async(append([]byte(nil), b...), nil); err != nil {
		return 0, err
	}
	return len(b), nil
}

// collect starts gathering the records of one tls.Conn.Write.
func (p *pipeConn) collect() {
	p.wmu.Lock()
	p.collecting = true
	p.wmu.Unlock()
}

// flush sends what collect gathered, in one write: from the loop
// (onLoop) with gnet's Write when no asynchronous write is queued ahead
// (everything written before already reached gnet's outbound buffer or the
// socket: the callbacks of queued writes run on this loop, and wmu keeps
// other writers out), else with AsyncWrite; cb (then always
// asynchronous) runs once the bytes were written. fail, when set, drops
// the gathered bytes and reports it to cb.
func (p *pipeConn) flush(onLoop bool, cb gnet.AsyncCallback, fail error) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	out := p.out
	p.collecting, p.out = false, nil
	if fail == nil && p.wclosed.Load() {
		fail = net.ErrClosed
	}
	if fail != nil {
		if cb != nil {
			_ = cb(p.real, fail)
		}
		return fail
	}
	if onLoop && directWrites && cb == nil && p.asyncs.Load() == 0 {
		if len(out) == 0 {
			return nil
		}
		_, err := p.real.Write(out) // gnet copies what the socket does not take
		p.out = out[:0]
		return err
	}
	if len(out) == 0 && cb == nil {
		return nil
	}
	return p.async(out, cb)
}

// async hands buf (now gnet's) to AsyncWrite; cb, if any, runs after it
// was written. The caller holds wmu.
func (p *pipeConn) async(buf []byte, cb gnet.AsyncCallback) error {
	n := int64(len(buf))
	p.queued.Add(n)
	p.asyncs.Add(1)
	err := p.real.AsyncWrite(buf, func(c gnet.Conn, err error) error {
		p.queued.Add(-n)
		p.asyncs.Add(-1)
		if cb != nil {
			return cb(c, err)
		}
		return nil
	})
	if err != nil {
		p.queued.Add(-n)
		p.asyncs.Add(-1)
		if cb != nil {
			_ = cb(p.real, err)
		}
	}
	return err
}

// Close ends the transport: a waiting Read returns, later writes fail.
// The real connection is closed by its owner, not here.
func (p *pipeConn) Close() error {
	p.mu.Lock()
	p.closed = true
	nc := p.nc
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wclosed.Store(true)
	if nc != nil {
		return nc.Close()
	}
	return nil
}

func (p *pipeConn) LocalAddr() net.Addr  { return p.local }
func (p *pipeConn) RemoteAddr() net.Addr { return p.remote }

// Deadlines apply to a Handoff's dialled connection only: on the loop
// nothing blocks, and the handshake has its own timeout.
func (p *pipeConn) SetDeadline(t time.Time) error {
	if nc := p.dialled(); nc != nil {
		return nc.SetDeadline(t)
	}
	return nil
}

func (p *pipeConn) SetReadDeadline(t time.Time) error {
	if nc := p.dialled(); nc != nil {
		return nc.SetReadDeadline(t)
	}
	return nil
}

func (p *pipeConn) SetWriteDeadline(t time.Time) error {
	if nc := p.dialled(); nc != nil {
		return nc.SetWriteDeadline(t)
	}
	return nil
}

func (p *pipeConn) dialled() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nc
}
