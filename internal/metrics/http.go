package metrics

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// ContentType is the Prometheus text exposition format's.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler serves r at any path, in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var b bytes.Buffer
		r.Write(&b)
		w.Header().Set("Content-Type", ContentType)
		_, _ = w.Write(b.Bytes())
	})
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
		IdleTimeout:       2 * time.Minute,
	}}
	go func() {
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
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
