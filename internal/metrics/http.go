package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ContentType is the Prometheus text exposition format's.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// MaxConns bounds the open connections of a metrics Listener: at it a
// new connection closes the one idle longest (LimitListener), or is
// closed at once while every one is serving a scrape (a scraper keeps
// one connection per target). Connections that waited instead (in the
// accept queue) let 64 idle keep-alive clients block every scrape, and
// the waiting Accept held Shutdown for the idle timeout (a review); 256
// idle ones, refused rather than closed, did the same for 30 s.
const MaxConns = 256

// Handler serves r at any path, in the Prometheus text format. Scrapes
// share their rendering: one render at a time, and a scrape takes the
// first render that started after it arrived (so it is never older than
// the request), however many scrapes wait. Each connection had rendered
// its own and held it for the write timeout: 3,000 connections that sent
// 50 pipelined scrapes each and read nothing took a coordinator from
// 12 MB to 287 MB and starved its heartbeats into two failovers (a
// review, 2026-12-03).
func (r *Registry) Handler() http.Handler {
	var s scrapes
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		body := s.get(time.Now(), r.render)
		w.Header().Set("Content-Type", ContentType)
		_, _ = w.Write(body)
	})
}

func (r *Registry) render() []byte {
	var b bytes.Buffer
	r.Write(&b)
	return b.Bytes()
}

// scrapes is the latest rendering and when it started.
type scrapes struct {
	mu      sync.Mutex
	started time.Time
	body    []byte // never changed once published: writers share it
}

// get returns a rendering started at or after arrived.
func (s *scrapes) get(arrived time.Time, render func() []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.body == nil || s.started.Before(arrived) {
		s.started = time.Now()
		s.body = render()
	}
	return s.body
}

// Listener is an HTTP server for /metrics (and whatever else its mux
// routes, /sd on the coordinator).
type Listener struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr (port 0: any free port) and serves r at /metrics and
// the extra routes of mux (nil: none) until Close: over HTTPS with tc
// (the process's own certificate: a cluster with TLS has no link in
// clear), over plain HTTP with tc nil.
func Listen(addr string, r *Registry, mux *http.ServeMux, tc *tls.Config) (*Listener, error) {
	if mux == nil {
		mux = http.NewServeMux()
	}
	mux.Handle("GET /metrics", r.Handler())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	limited := limitListener(ln, MaxConns, true)
	l := &Listener{ln: ln, srv: &http.Server{
		Handler:           withoutBodies(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second, // (no body is read, see withoutBodies: a bound all the same)
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnState:         limited.ConnState,
		// net/http logs every failed TLS handshake (any stranger's
		// connect: one line each on the process's stderr) and little
		// else a scrape endpoint needs.
		ErrorLog: log.New(io.Discard, "", 0),
	}}
	var serve net.Listener = limited
	if tc != nil {
		// (A scraper in clear gets net/http's "400 Client sent an HTTP
		// request to an HTTPS server".)
		serve = tls.NewListener(limited, tc)
	}
	go func() {
		if err := l.srv.Serve(serve); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = ln.Close()
		}
	}()
	return l, nil
}

// withoutBodies serves h only GET and HEAD requests without a body; any
// other is answered 405 (400 for a GET or HEAD with a body) and its
// connection closed, its body never read. net/http reads an unread body
// (up to 256 KiB) after the handler, with no read deadline: 256
// connections that sent "POST /metrics" with a Content-Length and then no
// body stayed serving a request each, where the port's limit closes none,
// and every scrape was refused for as long as they liked (a review).
func withoutBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		get := r.Method == http.MethodGet || r.Method == http.MethodHead
		if get && r.ContentLength == 0 {
			h.ServeHTTP(w, r)
			return
		}
		// A read deadline already passed ends that read of the body at
		// once; the connection closes after the answer.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		w.Header().Set("Connection", "close")
		if !get {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		http.Error(w, "a scrape has no body", http.StatusBadRequest)
	})
}

// Addr is the address bound (host:port).
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// Close stops serving.
func (l *Listener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return l.srv.Shutdown(ctx)
}

// LimitListener accepts at most n connections open at a time for an
// http.Server whose ConnState is the returned listener's ConnState. At n,
// a new connection closes the one that has waited longest for a request
// (idle between requests, or not sent its first yet: StateIdle and
// StateNew, a TLS handshake included) to take its place, as a client
// may find any idle keep-alive connection closed; only when every
// connection is serving a request does it wait for one to close. Blocked
// at n instead, 1,024 connections that sent one request each and then
// idled (kept for the server's IdleTimeout, 2 minutes) locked every other
// client out (a review).
func LimitListener(ln net.Listener, n int) *Limited { return limitListener(ln, n, false) }

// limitListener is LimitListener; refuse: with every connection serving
// a request, a new one is closed at once instead of waiting.
func limitListener(ln net.Listener, n int, refuse bool) *Limited {
	return &Limited{Listener: ln, n: n, refuse: refuse, idle: map[*limitedConn]int64{}, bodies: map[*limitedConn]struct{}{},
		freed: make(chan struct{}, 1)}
}

// SlowBody is how long a request's body (read through WatchBody) may have
// sent nothing, or may lag behind MinBodyRate since it began, before, at
// the bound, its connection is closed for a new one as an idle one is.
// timing: exception — a stall of the sender's, measured against no peer's timing.
const SlowBody = time.Second

// MinBodyRate (bytes a second) is the pace below which a body that keeps
// sending counts as stalled (see SlowBody): far below any honest upload.
// Counted on silence alone, 1,100 uploads sending a byte every half
// second held every place until the read timeout (an attacker).
const MinBodyRate = 4 << 10

// Limited is LimitListener's listener.
type Limited struct {
	net.Listener
	n      int
	refuse bool
	freed  chan struct{} // a connection closed or became idle (a waiting Accept looks again)

	mu     sync.Mutex
	open   int
	idle   map[*limitedConn]int64 // waiting for a request, since (unix ns)
	bodies map[*limitedConn]struct{}
}

// Accept returns the next connection once there is room for it (see
// LimitListener).
func (l *Limited) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		l.mu.Lock()
		if l.open < l.n {
			l.open++
			l.mu.Unlock()
			return &limitedConn{Conn: c, l: l}, nil
		}
		var victim *limitedConn
		var oldest int64
		for lc, since := range l.idle {
			if victim == nil || since < oldest {
				victim, oldest = lc, since
			}
		}
		// A body that sent nothing for SlowBody counts as idle since its
		// last byte (an uploader sending a byte every 2 s held its place
		// for the read timeout: a review), one that keeps sending since
		// the time by which MinBodyRate had sent what it sent.
		stalled := time.Now().Add(-SlowBody).UnixNano()
		for lc := range l.bodies {
			if since := min(lc.lastRead.Load(), lc.due()); since < stalled && (victim == nil || since < oldest) {
				victim, oldest = lc, since
			}
		}
		delete(l.idle, victim)
		delete(l.bodies, victim)
		waitBodies := len(l.bodies) > 0
		l.mu.Unlock()
		switch {
		case victim != nil:
			_ = victim.Close() // (frees its place at once)
		case l.refuse:
			_ = c.Close()
			if c, err = l.Listener.Accept(); err != nil {
				return nil, err
			}
		case waitBodies:
			// A body may stall meanwhile: look again.
			select {
			case <-l.freed:
			case <-time.After(SlowBody / 4):
			}
		default:
			<-l.freed
		}
	}
}

type connKey struct{}

// ConnContext is the http.Server's ConnContext hook: a request's context
// then knows its connection (WatchBody).
func (l *Limited) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitedConn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// WatchBody returns r's body, read through a reader that marks r's
// connection as sending a body until the body ends (or fails): at the
// bound, one whose body has sent nothing for SlowBody is closed for a
// newcomer, as an idle connection is. A request that has its whole body
// and waits (for the cluster, say) is never.
func (l *Limited) WatchBody(r *http.Request) io.ReadCloser {
	lc, _ := r.Context().Value(connKey{}).(*limitedConn)
	if lc == nil || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return r.Body
	}
	lc.bodyFrom.Store(lc.read.Load())
	lc.bodyStart.Store(time.Now().UnixNano())
	l.mu.Lock()
	if !lc.closed {
		l.bodies[lc] = struct{}{}
	}
	l.mu.Unlock()
	return &watchedBody{ReadCloser: r.Body, lc: lc}
}

// bodyDone says lc's request body ended.
func (l *Limited) bodyDone(lc *limitedConn) {
	l.mu.Lock()
	delete(l.bodies, lc)
	l.mu.Unlock()
}

type watchedBody struct {
	io.ReadCloser
	lc *limitedConn
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.lc.l.bodyDone(b.lc)
	}
	return n, err
}

// ConnState is the http.Server's ConnState hook: it tells which
// connections wait for a request.
func (l *Limited) ConnState(c net.Conn, s http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	waiting := (s == http.StateNew || s == http.StateIdle) && !lc.closed
	if waiting {
		l.idle[lc] = time.Now().UnixNano()
	} else {
		delete(l.idle, lc)
	}
	if s != http.StateActive {
		// (A body the handler left unread is read by net/http after it,
		// still active: it stays watched until the next request.)
		delete(l.bodies, lc)
	}
	l.mu.Unlock()
	if waiting {
		l.wake()
	}
}

func (l *Limited) wake() {
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

type limitedConn struct {
	net.Conn
	l        *Limited
	closed   bool         // under l.mu
	lastRead atomic.Int64 // unix ns of the last read that returned bytes
	read     atomic.Int64 // bytes read
	// bodyStart and bodyFrom: when the body being watched began (unix
	// ns) and read then.
	bodyStart, bodyFrom atomic.Int64
}

func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read.Add(int64(n))
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

// due is when (unix ns) a body sent at MinBodyRate since c's body began
// had sent what c's has.
func (c *limitedConn) due() int64 {
	sent := c.read.Load() - c.bodyFrom.Load()
	return c.bodyStart.Load() + sent*int64(time.Second)/MinBodyRate
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.l.mu.Lock()
	first := !c.closed
	if first {
		c.closed = true
		c.l.open--
		delete(c.l.idle, c)
		delete(c.l.bodies, c)
	}
	c.l.mu.Unlock()
	if first {
		c.l.wake()
	}
	return err
}
