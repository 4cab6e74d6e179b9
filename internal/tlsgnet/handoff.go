package tlsgnet

import (
	"crypto/tls"
	"net"

	"github.com/panjf2000/gnet/v2"
)

// Handoff is a TLS session on a connection dialled (or accepted) with the
// net package that moves into a gnet event loop once established: the
// handshake and any blocking exchange (a HELLO and its answer) run on the
// embedded *tls.Conn, with deadlines; then the connection is registered
// with an engine whose handler was made by Wrap, passing Context as the
// connection's context, and the session carries on there:
//
//	ho := tlsgnet.Client(nc, cfg)
//	ho.Handshake() ... ho.Write(hello) ... ho.Read(answer)
//	ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), ho.Context(mine)), nc)
//	res := <-eng.Register(ctx) // then tlsgnet.Of(res.Conn) is what Wrap's handler sees
//
// No read or write may be in progress on the tls.Conn when it is
// registered, and it must not be used directly afterwards.
type Handoff struct {
	*tls.Conn
	pipe *pipeConn
}

// Client starts a client session on nc.
func Client(nc net.Conn, cfg *tls.Config) *Handoff { return handoff(nc, cfg, tls.Client) }

// Server starts a server session on nc.
func Server(nc net.Conn, cfg *tls.Config) *Handoff { return handoff(nc, cfg, tls.Server) }

func handoff(nc net.Conn, cfg *tls.Config, mk func(net.Conn, *tls.Config) *tls.Conn) *Handoff {
	p := newPipe(nil, false)
	p.nc, p.local, p.remote = nc, nc.LocalAddr(), nc.RemoteAddr()
	return &Handoff{Conn: mk(p, cfg), pipe: p}
}

// handoffCtx is the gnet context of a connection registered by a Handoff.
type handoffCtx struct {
	tc    *tls.Conn
	pipe  *pipeConn
	inner any
}

// Context returns the gnet connection context to register the dialled
// connection with; inner becomes the wrapped handler's context for it.
func (h *Handoff) Context(inner any) any {
	return &handoffCtx{tc: h.Conn, pipe: h.pipe, inner: inner}
}

// adopt moves the transport from the dialled connection (which gnet
// duplicated and closes) to rc.
func (p *pipeConn) adopt(rc gnet.Conn) {
	p.mu.Lock()
	p.nc, p.blocking = nil, false
	p.mu.Unlock()
	p.wmu.Lock()
	p.real = rc
	p.wmu.Unlock()
}
