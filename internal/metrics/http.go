package metrics

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// ContentType is the Prometheus text exposition format's.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// MaxConns bounds the open connections of a metrics Listener: beyond it
// a new connection is closed at once (a scraper keeps one connection per
// target). Connections that wait instead (in the accept queue) let 64
// idle keep-alive clients block every scrape, and the waiting Accept
// held Shutdown for the idle timeout (a review).
const MaxConns = 256

// refusingListener closes connections beyond its sem's capacity at once.
type refusingListener struct {
	net.Listener
	sem chan struct{}
}

func (l *refusingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			_ = c.Close()
		}
	}
}

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
// the extra routes of mux (nil: none) until Close.
func Listen(addr string, r *Registry, mux *http.ServeMux) (*Listener, error) {
	if mux == nil {
		mux = http.NewServeMux()
	}
	mux.Handle("GET /metrics", r.Handler())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &Listener{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}}
	go func() {
		if err := l.srv.Serve(&refusingListener{Listener: ln, sem: make(chan struct{}, MaxConns)}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = ln.Close()
		}
	}()
	return l, nil
}

// Addr is the address bound (host:port).
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// Close stops serving.
func (l *Listener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return l.srv.Shutdown(ctx)
}

// LimitListener accepts at most n connections open at a time: beyond, its
// Accept waits until one of them is closed, and new connections wait in
// the kernel's accept queue meanwhile.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n)}
}

type limitedListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitedListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
