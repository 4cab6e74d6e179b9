package tlsgnet

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// Connection states.
const (
	stateHandshake int32 = iota // the handshake goroutine runs
	stateReady                  // application data flows
	stateClosed                 // refused, failed or closed
)

// plainChunk is the free room kept for one tls.Conn.Read: a whole record.
const plainChunk = 16 << 10

var plainPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*plainChunk); return &b }}

// conn is the connection a wrapped handler sees: the real gnet.Conn with
// its Reader and Writer methods, its context, Wake and Close replaced.
// Socket options, addresses, EventLoop and SafeContext are the real
// connection's.
type conn struct {
	gnet.Conn // the real connection

	h      *handler
	tc     *tls.Conn
	pipe   *pipeConn
	state  atomic.Int32
	ctx    any         // the wrapped handler's context
	woken  atomic.Bool // Wake was called: OnTraffic must reach the handler
	cancel context.CancelFunc
	hsElem *list.Element // in h.hs while the handshake runs (under h.hsMu)

	// On the loop only: decrypted input not yet consumed, plain[off:].
	plain []byte
	off   int
	seen  bool // the first bytes were checked for a plaintext client

	// mu orders the handler's writes; before the handshake completes they
	// wait in pending (their callbacks in pendCBs).
	mu      sync.Mutex
	pending []byte
	pendCBs []gnet.AsyncCallback
	npend   atomic.Int64
	// loopWriting: the loop is inside write, holding mu (loop only). A
	// write on the loop to a peer that has gone makes gnet close the
	// connection right there, calling OnClose on the same goroutine:
	// OnClose must not lock mu then (the loop deadlocked on itself, and
	// every connection of that loop with it).
	loopWriting bool
}

// ConnectionState returns the TLS state of a connection a wrapped handler
// was given (peer certificates, version), and false for any other one.
func ConnectionState(c gnet.Conn) (tls.ConnectionState, bool) {
	if tc, ok := c.(*conn); ok {
		return tc.tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// Of returns the connection the wrapped handler sees for c, a connection
// gnet handed out elsewhere (Engine.Register's result), or c itself when
// it is not wrapped.
func Of(c gnet.Conn) gnet.Conn {
	if tc, ok := c.Context().(*conn); ok {
		return tc
	}
	return c
}

// wrapCB has gnet's callback receive the wrapper, not the real connection.
func (c *conn) wrapCB(cb gnet.AsyncCallback) gnet.AsyncCallback {
	if cb == nil {
		return nil
	}
	return func(_ gnet.Conn, err error) error { return cb(c, err) }
}

// --- gnet.Reader over the plaintext ---

func (c *conn) buffered() []byte { return c.plain[c.off:] }

func (c *conn) InboundBuffered() int { return len(c.plain) - c.off }

func (c *conn) Peek(n int) ([]byte, error) {
	b := c.buffered()
	if n > len(b) {
		return nil, io.ErrShortBuffer
	}
	if n <= 0 {
		n = len(b)
	}
	return b[:n:n], nil
}

func (c *conn) Next(n int) ([]byte, error) {
	b, err := c.Peek(n)
	if err == nil {
		c.off += len(b)
	}
	return b, err
}

func (c *conn) Discard(n int) (int, error) {
	have := c.InboundBuffered()
	if n <= 0 || n >= have {
		c.off = len(c.plain)
		return have, nil
	}
	c.off += n
	return n, nil
}

func (c *conn) Read(p []byte) (int, error) {
	n := copy(p, c.buffered())
	c.off += n
	if n == 0 && len(p) > 0 {
		return 0, io.ErrShortBuffer
	}
	return n, nil
}

func (c *conn) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(c.buffered())
	c.off += n
	return int64(n), err
}

// grow leaves room for a whole record after the unconsumed plaintext.
func (c *conn) grow() {
	if c.plain == nil {
		c.plain = (*plainPool.Get().(*[]byte))[:0]
		c.off = 0
	}
	if c.off == len(c.plain) {
		c.plain, c.off = c.plain[:0], 0
	}
	if cap(c.plain)-len(c.plain) >= plainChunk {
		return
	}
	have := len(c.plain) - c.off
	if c.off > 0 && cap(c.plain)-have >= plainChunk {
		copy(c.plain, c.plain[c.off:])
		c.plain, c.off = c.plain[:have], 0
		return
	}
	nb := make([]byte, have, 2*cap(c.plain)+plainChunk)
	copy(nb, c.plain[c.off:])
	c.plain, c.off = nb, 0
}

// release gives an empty plaintext buffer back, so an idle connection
// holds none.
func (c *conn) release() {
	if c.plain != nil && c.off == len(c.plain) {
		if cap(c.plain) <= 4*plainChunk {
			b := c.plain[:0]
			plainPool.Put(&b)
		}
		c.plain, c.off = nil, 0
	}
}

// decrypt moves ciphertext from rc (gnet's inbound buffer) through the
// tls.Conn into the plaintext buffer until none is left, or until max
// plaintext bytes wait (max > 0). It reports whether plaintext was added.
func (c *conn) decrypt(rc gnet.Conn, max int) (bool, error) {
	c.pipe.setSrc(rc)
	defer c.pipe.setSrc(nil)
	got := false
	for max <= 0 || c.InboundBuffered() < max {
		c.grow()
		n, err := c.tc.Read(c.plain[len(c.plain):cap(c.plain)])
		c.plain = c.plain[:len(c.plain)+n]
		got = got || n > 0
		if err != nil {
			if errors.Is(err, errWouldBlock) {
				err = nil
			}
			return got, err
		}
	}
	return got, nil
}

// --- gnet.Writer: encrypted ---

// write encrypts b for the peer. onLoop: the caller runs on the
// connection's event loop (gnet's contract for Write). Before the
// handshake completes, b waits. cb (already wrapped) runs once written,
// unless write returns an error.
func (c *conn) write(b []byte, onLoop bool, cb gnet.AsyncCallback) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state.Load() {
	case stateHandshake:
		c.pending = append(c.pending, b...)
		c.npend.Add(int64(len(b)))
		if cb != nil {
			c.pendCBs = append(c.pendCBs, cb)
		}
		return nil
	case stateClosed:
		return net.ErrClosed
	}
	if onLoop {
		c.loopWriting = true
		defer func() { c.loopWriting = false }()
	}
	return c.encrypt(b, onLoop, cb)
}

// encrypt writes b through the tls.Conn; the caller holds mu.
func (c *conn) encrypt(b []byte, onLoop bool, cb gnet.AsyncCallback) error {
	c.pipe.collect()
	_, err := c.tc.Write(b)
	return c.pipe.flush(onLoop, cb, err)
}

func (c *conn) Write(b []byte) (int, error) {
	if err := c.write(b, true, nil); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *conn) Writev(bs [][]byte) (int, error) {
	b := join(bs)
	return c.Write(b)
}

func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	b, err := io.ReadAll(r)
	if len(b) > 0 {
		if _, werr := c.Write(b); werr != nil && err == nil {
			err = werr
		}
	}
	return int64(len(b)), err
}

func (c *conn) SendTo([]byte, net.Addr) (int, error) { return 0, errors.ErrUnsupported }

func (c *conn) AsyncWrite(b []byte, cb gnet.AsyncCallback) error {
	return c.write(b, false, c.wrapCB(cb))
}

func (c *conn) AsyncWritev(bs [][]byte, cb gnet.AsyncCallback) error {
	return c.write(join(bs), false, c.wrapCB(cb))
}

// Raw is the gnet connection under the TLS layer: its OutboundBuffered
// is gnet's own buffer only (connlimit's epoll interest follows that).
func (c *conn) Raw() gnet.Conn { return c.Conn }

// OutboundBuffered counts ciphertext gnet holds or has queued, and what
// waits for the handshake.
func (c *conn) OutboundBuffered() int {
	return c.Conn.OutboundBuffered() + int(c.pipe.queued.Load()) + int(c.npend.Load())
}

func join(bs [][]byte) []byte {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	out := make([]byte, 0, n)
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// --- context, Wake, Close ---

func (c *conn) Context() any       { return c.ctx }
func (c *conn) SetContext(ctx any) { c.ctx = ctx }

// Wake has the wrapped handler's OnTraffic called with this connection.
func (c *conn) Wake(cb gnet.AsyncCallback) error {
	c.woken.Store(true)
	return c.Conn.Wake(c.wrapCB(cb))
}

// Close closes the connection after the writes queued before it.
func (c *conn) Close() error { return c.Conn.Close() }

func (c *conn) CloseWithCallback(cb gnet.AsyncCallback) error {
	return c.Conn.CloseWithCallback(c.wrapCB(cb))
}
