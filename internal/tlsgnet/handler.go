package tlsgnet

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"
)

// DefaultHandshakeTimeout bounds a handshake unless WithHandshakeTimeout
// says otherwise.
const DefaultHandshakeTimeout = 10 * time.Second // timing: exception — a client's handshake, unrelated to the failure timeout

// recordTypeHandshake is the first byte of every TLS client's first record.
const recordTypeHandshake = 0x16

// ErrTooMuchInput closes a connection whose peer keeps sending while
// WithMaxBuffered bytes of plaintext wait for the handler.
var ErrTooMuchInput = errors.New("tlsgnet: too much unread input")

// Option configures Wrap.
type Option func(*options)

type options struct {
	timeout     time.Duration
	maxHS       int
	onPlaintext func(first []byte) []byte
	maxBuffered int
	log         zerolog.Logger
}

// DefaultMaxHandshakes bounds the handshakes in flight on one port
// unless WithMaxHandshakes says otherwise: each holds a goroutine and
// crypto/tls's buffer for its record (up to 16 KiB), for as long as the
// handshake timeout (an attack: 9,000 stalled handshakes took a server
// from 70 to 300 MB).
const DefaultMaxHandshakes = 512

// WithMaxHandshakes bounds the handshakes in flight (DefaultMaxHandshakes):
// a new connection beyond it ends the oldest one still handshaking.
func WithMaxHandshakes(n int) Option {
	return func(o *options) { o.maxHS = n }
}

// WithHandshakeTimeout bounds each handshake (DefaultHandshakeTimeout);
// a client still handshaking after d is closed.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithOnPlaintext sets what a client that does not start with a TLS
// handshake gets: f's answer to its first bytes (an error in the port's
// own protocol), written in clear before the connection is closed. By
// default the connection is closed without a word.
func WithOnPlaintext(f func(first []byte) []byte) Option {
	return func(o *options) { o.onPlaintext = f }
}

// WithMaxBuffered stops decrypting while n bytes of plaintext wait for the
// handler; the rest stays ciphertext in gnet's buffer. If that ciphertext
// also grows past n, the connection is closed (ErrTooMuchInput). n must
// exceed the largest message the handler needs whole. 0 (the default)
// decrypts whatever arrives, as gnet reads whatever arrives: the wrapped
// handler's own input limits then see all of it.
func WithMaxBuffered(n int) Option {
	return func(o *options) { o.maxBuffered = n }
}

// WithLogger logs failed handshakes.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) { o.log = l }
}

// handler is the gnet.EventHandler Wrap returns.
type handler struct {
	inner gnet.EventHandler
	cfg   *tls.Config
	o     options

	hsMu sync.Mutex
	hs   list.List // connections handshaking, oldest first (*conn)

	logMu      sync.Mutex
	lastLog    map[string]time.Time // when a failure of each kind was last logged
	suppressed int                  // failed handshakes not logged since
}

// logEvery is how often a failed handshake is logged at most: a flood of
// them (scanners, a client in clear, expired certificates) must not fill
// the disk.
const logEvery = time.Second

// logFailure logs a failed handshake at most once per logEvery for each
// kind of failure (its error's text: a flood repeats one, and a different
// one is news), with the number of failures it did not log.
func (h *handler) logFailure(c *conn, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
		// The peer left, or a plaintext client was answered: debug only.
		h.o.log.Debug().Stringer("remote", c.pipe.remote).Err(err).Msg("tls handshake failed")
		return
	}
	kind := err.Error()
	now := time.Now()
	h.logMu.Lock()
	defer h.logMu.Unlock()
	if now.Sub(h.lastLog[kind]) < logEvery {
		h.suppressed++
		return
	}
	if h.lastLog == nil || len(h.lastLog) >= 64 {
		h.lastLog = make(map[string]time.Time) // (bounded: kinds seen within a second)
	}
	h.o.log.Info().Stringer("remote", c.pipe.remote).Err(err).Int("not_logged", h.suppressed).Msg("tls handshake failed")
	h.lastLog[kind] = now
	h.suppressed = 0
}

// Wrap returns an event handler that speaks TLS (cfg, a server
// configuration) on every connection and hands inner the plaintext. inner
// sees its own connection type: Peek/Next/Discard/Read serve decrypted
// bytes, Write/AsyncWrite encrypt, Context/SetContext are inner's own and
// Wake calls inner's OnTraffic. Connections registered with a Handoff's
// Context continue a session established elsewhere.
func Wrap(inner gnet.EventHandler, cfg *tls.Config, opts ...Option) gnet.EventHandler {
	h := &handler{inner: inner, cfg: cfg, o: options{timeout: DefaultHandshakeTimeout, maxHS: DefaultMaxHandshakes, log: zerolog.Nop()}}
	for _, opt := range opts {
		opt(&h.o)
	}
	return h
}

func (h *handler) OnBoot(e gnet.Engine) gnet.Action     { return h.inner.OnBoot(e) }
func (h *handler) OnShutdown(e gnet.Engine)             { h.inner.OnShutdown(e) }
func (h *handler) OnTick() (time.Duration, gnet.Action) { return h.inner.OnTick() }

func (h *handler) OnOpen(rc gnet.Conn) ([]byte, gnet.Action) {
	c := &conn{Conn: rc, h: h, ctx: rc.Context()}
	ho, handoff := c.ctx.(*handoffCtx)
	if handoff {
		c.ctx = ho.inner
		c.tc, c.pipe = ho.tc, ho.pipe
		c.pipe.adopt(rc)
		c.state.Store(stateReady)
		c.seen = true
	} else {
		c.pipe = newPipe(rc, true)
		c.tc = tls.Server(c.pipe, h.cfg)
	}
	rc.SetContext(c)
	out, act := h.inner.OnOpen(c)
	if len(out) > 0 {
		_ = c.write(out, true, nil) // after the handshake
	}
	if act != gnet.None {
		return nil, h.action(c, act)
	}
	if handoff {
		// The session may hold input read while it was established.
		_ = rc.Wake(nil)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), h.o.timeout)
		c.cancel = cancel
		h.hsMu.Lock()
		var oldest *conn
		if h.o.maxHS > 0 && h.hs.Len() >= h.o.maxHS {
			oldest = h.hs.Remove(h.hs.Front()).(*conn)
			oldest.hsElem = nil
		}
		c.hsElem = h.hs.PushBack(c)
		h.hsMu.Unlock()
		if oldest != nil {
			oldest.cancel() // its handshake returns and closes it
		}
		go c.handshake(ctx)
	}
	return nil, gnet.None
}

// handshake runs the server handshake off the loop; its reads wait for
// what OnTraffic feeds. It ends when the handshake does, fails, times out
// or the connection closes.
func (c *conn) handshake(ctx context.Context) {
	err := c.tc.HandshakeContext(ctx)
	c.cancel()
	c.h.hsMu.Lock()
	if c.hsElem != nil {
		c.h.hs.Remove(c.hsElem)
		c.hsElem = nil
	}
	c.h.hsMu.Unlock()
	if err != nil {
		// Logged even when the peer has closed meanwhile: it closes as
		// soon as it reads the alert for a refused certificate.
		c.h.logFailure(c, err)
	}
	c.mu.Lock()
	if c.state.Load() != stateHandshake {
		c.mu.Unlock()
		return // closed meanwhile
	}
	if err != nil {
		c.state.Store(stateClosed)
		c.mu.Unlock()
		_ = c.Conn.Close() // after the alert tls queued
		return
	}
	c.pipe.unblock()
	c.state.Store(stateReady)
	pend, cbs := c.pending, c.pendCBs
	c.pending, c.pendCBs = nil, nil
	var ferr error
	if len(pend) > 0 || len(cbs) > 0 {
		ferr = c.encrypt(pend, false, func(_ gnet.Conn, err error) error {
			for _, cb := range cbs {
				_ = cb(c, err)
			}
			return nil
		})
		c.npend.Store(0)
	}
	c.mu.Unlock()
	if ferr != nil {
		for _, cb := range cbs {
			_ = cb(c, ferr)
		}
	}
	_ = c.Conn.Wake(nil) // decrypt what arrived with the handshake's end
}

func (h *handler) OnTraffic(rc gnet.Conn) gnet.Action {
	c, ok := rc.Context().(*conn)
	if !ok {
		return h.inner.OnTraffic(rc)
	}
	switch c.state.Load() {
	case stateClosed:
		_, _ = rc.Discard(-1)
		return gnet.None
	case stateHandshake:
		if !c.seen && rc.InboundBuffered() > 0 {
			c.seen = true
			if first, _ := rc.Peek(-1); len(first) > 0 && first[0] != recordTypeHandshake {
				return c.refusePlaintext(rc, first)
			}
		}
		if b, _ := rc.Next(-1); len(b) > 0 {
			c.pipe.feed(b)
		}
		if c.woken.Swap(false) {
			return h.action(c, h.inner.OnTraffic(c))
		}
		return gnet.None
	}
	arrived := rc.InboundBuffered() > 0
	got, err := c.decrypt(rc, h.o.maxBuffered)
	if err == nil && h.o.maxBuffered > 0 && rc.InboundBuffered() > h.o.maxBuffered {
		err = ErrTooMuchInput
	}
	if err != nil {
		// A bad record, or the peer's close_notify (io.EOF): what was
		// decrypted before still reaches the handler.
		if got {
			_ = h.inner.OnTraffic(c)
		}
		if !errors.Is(err, io.EOF) {
			h.o.log.Info().Stringer("remote", rc.RemoteAddr()).Err(err).Msg("tls connection failed")
		}
		return h.action(c, gnet.Close)
	}
	woken := c.woken.Swap(false)
	if !got && !woken && !(arrived && c.InboundBuffered() > 0) {
		return gnet.None
	}
	act := h.inner.OnTraffic(c)
	c.release()
	return h.action(c, act)
}

// refusePlaintext answers a client that does not speak TLS and closes it.
func (c *conn) refusePlaintext(rc gnet.Conn, first []byte) gnet.Action {
	c.mu.Lock()
	c.state.Store(stateClosed)
	c.mu.Unlock()
	c.pipe.Close()
	c.cancel()
	c.h.o.log.Debug().Stringer("remote", c.pipe.remote).Msg("a client in clear refused")
	if f := c.h.o.onPlaintext; f != nil {
		if msg := f(append([]byte(nil), first...)); len(msg) > 0 {
			_, _ = rc.Write(msg) // nothing else was written: the handshake waits for a ClientHello
		}
	}
	_, _ = rc.Discard(-1)
	return gnet.Close
}

func (h *handler) OnClose(rc gnet.Conn, err error) gnet.Action {
	c, ok := rc.Context().(*conn)
	if !ok {
		return h.inner.OnClose(rc, err)
	}
	// Inside a write on the loop (gnet closing the connection in its
	// Write) mu is held by this very goroutine: see conn.loopWriting.
	if !c.loopWriting {
		c.mu.Lock()
	}
	c.state.Store(stateClosed)
	cbs := c.pendCBs
	c.pending, c.pendCBs = nil, nil
	c.npend.Store(0)
	if !c.loopWriting {
		c.mu.Unlock()
	}
	// A waiting handshake returns (it cancels its own context then). Not
	// cancelled here: HandshakeContext returns the context's error over
	// its own once the context ends, and a peer that closes as soon as it
	// reads the alert for a refused certificate then hid why it was
	// refused (the refusal went unlogged: TestTLSRefusals under load).
	c.pipe.Close()
	for _, cb := range cbs {
		_ = cb(c, net.ErrClosed)
	}
	act := h.inner.OnClose(c, err)
	c.plain, c.off = nil, 0
	return act
}

// action returns a, except that a Close with encrypted writes still queued
// behind AsyncWrite closes after them.
func (h *handler) action(c *conn, a gnet.Action) gnet.Action {
	if a == gnet.Close && c.pipe.asyncs.Load() > 0 {
		_ = c.Conn.Close()
		return gnet.None
	}
	return a
}
