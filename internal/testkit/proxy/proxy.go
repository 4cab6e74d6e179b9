// Package proxy is a TCP proxy for tests: it listens on a loopback port,
// forwards every connection to a target address and can cut a connection
// just after the target answered, so that a request is applied but its
// reply never reaches the caller.
package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Proxy. The zero value forwards everything.
type Options struct {
	// DropReply is consulted for every chunk of bytes read from the target.
	// When it returns true the chunk is discarded and both sides of the
	// connection are closed: whatever the target answered in it is lost.
	// It may be called from many goroutines at once.
	DropReply func() bool
	// Sent, when set, is given every chunk of bytes the caller sent, in
	// order per connection, before it is forwarded. It may be called from
	// many goroutines at once; it must not keep b.
	Sent func(b []byte)
}

// Proxy forwards connections from Addr to a target.
type Proxy struct {
	ln     net.Listener
	target string
	opts   Options

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	accepted atomic.Int64
	drops    atomic.Int64
}

// Start listens on 127.0.0.1:0 and forwards to target until Close.
func Start(target string, opts Options) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, opts: opts, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address callers connect to instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// Accepted is the number of connections accepted so far.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Drops is the number of connections cut by DropReply so far.
func (p *Proxy) Drops() int64 { return p.drops.Load() }

// Close stops listening, closes every connection and waits for the
// forwarding goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// track registers c so Close can reach it; it reports false (and closes
// c) once the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		_ = c.Close()
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		p.accepted.Add(1)
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(down net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		p.untrack(down)
		return
	}
	if !p.track(up) {
		p.untrack(down)
		return
	}
	defer p.untrack(down, up)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var from io.Reader = down
		if p.opts.Sent != nil {
			from = io.TeeReader(down, sentWriter(p.opts.Sent))
		}
		_, _ = io.Copy(up, from)
		// The caller went away (or the other direction closed both).
		p.untrack(down, up)
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if p.opts.DropReply != nil && p.opts.DropReply() {
				p.drops.Add(1)
				return
			}
			if _, werr := down.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// sentWriter hands what it is written to Options.Sent.
type sentWriter func(b []byte)

func (f sentWriter) Write(b []byte) (int, error) { f(b); return len(b), nil }
