package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/connlimit"
	"ftkv/wire"
)

// Gate authenticates the connections of a gnet port served by connlimit:
// the first frame of a connection must be HELLO with Key = user name and
// Value = password. It is answered OK (Value = the role's name) or
// UNAUTHENTICATED, after which the connection is closed. A frame sent
// before HELLO's answer arrived is refused the same way.
//
// A password seen before is checked on the event loop from the
// Verifier's cache; a new one is checked (bcrypt) on a goroutine and
// answered with AsyncWrite, whose callback marks the connection
// authenticated on its loop before any later frame is read.
type Gate struct {
	v       *Verifier
	timeout time.Duration
}

// NewGate guards a port with v; a check waiting longer than timeout (for
// a free checking slot) fails.
func NewGate(v *Verifier, timeout time.Duration) *Gate {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Gate{v: v, timeout: timeout}
}

// Verifier is the gate's verifier.
func (g *Gate) Verifier() *Verifier { return g.v }

// counted tells the verifier's OnLogin of a login's outcome.
func (g *Gate) counted(outcome string) {
	if f := g.v.cfg.OnLogin; f != nil {
		f(outcome)
	}
}

// connAuth is a connection's authentication, in its connlimit.State.Data.
// Touched on the connection's event loop only.
type connAuth struct {
	user    User
	pending bool // a check runs on a goroutine
}

// Authenticated returns the user c authenticated as; ok is false while it
// has not. Only on c's event loop.
func Authenticated(c gnet.Conn) (u User, ok bool) {
	st := connlimit.Of(c)
	if st == nil {
		return User{}, false
	}
	a, _ := st.Data.(*connAuth)
	if a == nil || a.user.Role == RoleNone {
		return User{}, false
	}
	return a.user, true
}

// RoleOf is the role c authenticated with (RoleNone: it has not). Only on
// c's event loop.
func RoleOf(c gnet.Conn) Role {
	u, _ := Authenticated(c)
	return u.Role
}

// Hello answers f, a frame of a connection that has not authenticated
// (RoleOf(c) == RoleNone), into out. Only on c's event loop.
func (g *Gate) Hello(c gnet.Conn, f *wire.Frame, out []byte) ([]byte, gnet.Action) {
	st := connlimit.Of(c)
	if st == nil {
		return refuse(out, f, "authentication required"), gnet.Close
	}
	a, _ := st.Data.(*connAuth)
	if a == nil {
		a = &connAuth{}
		st.Data = a
	}
	if a.pending {
		return refuse(out, f, "a frame arrived before the answer to HELLO: wait for it"), gnet.Close
	}
	if f.Op == wire.OpHello && f.Seq == wire.HelloProbe && len(f.Key) == 0 && len(f.Value) == 0 {
		// Asked before a password is sent in clear: this is no TLS port.
		return wire.Append(out, &wire.Frame{Op: wire.OpHello, ID: f.ID, Seq: wire.HelloProbe}), gnet.None
	}
	if f.Op != wire.OpHello {
		g.v.cfg.Log.Info().Str("port", g.v.cfg.Port).Str("remote", addrIP(c.RemoteAddr())).Str("op", f.Op.String()).
			Msg("request without authentication refused")
		g.counted(LoginNoHello)
		return refuse(out, f, "authentication required: this cluster has users (bin/client -user NAME with FTKV_PASSWORD; Go: client.WithAuth)"), gnet.Close
	}
	if u, ok := g.v.Cached(c.RemoteAddr(), f.Key, f.Value); ok {
		a.user = u
		st.Authed()
		g.counted(LoginOK)
		return wire.Append(out, &wire.Frame{Op: wire.OpHello, ID: f.ID, Value: []byte(u.Role.String())}), gnet.None
	}
	a.pending = true
	user := append([]byte(nil), f.Key...)
	pw := append([]byte(nil), f.Value...)
	id, remote := f.ID, c.RemoteAddr()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
		u, err := g.v.Verify(ctx, remote, user, pw)
		cancel()
		clear(pw)
		g.counted(Outcome(err))
		var ans []byte
		if err != nil {
			msg := err.Error()
			if !errors.Is(err, ErrDenied) && !errors.Is(err, ErrThrottled) {
				msg = fmt.Sprintf("authentication could not be checked in time: %v", err)
			}
			ans = refuse(nil, &wire.Frame{Op: wire.OpHello, ID: id}, msg)
		} else {
			ans = wire.Append(nil, &wire.Frame{Op: wire.OpHello, ID: id, Value: []byte(u.Role.String())})
		}
		_ = c.AsyncWrite(ans, func(c gnet.Conn, werr error) error {
			// On c's event loop, before any frame read after this one.
			a.pending = false
			if err != nil || werr != nil {
				return c.Close()
			}
			a.user = u
			if st := connlimit.Of(c); st != nil {
				st.Authed()
			}
			connlimit.Wrote(c)
			return nil
		})
	}()
	return out, gnet.None
}

// Forbidden answers f, a request c's role does not allow, into out (the
// connection stays open).
func Forbidden(c gnet.Conn, f *wire.Frame, out []byte, what string) []byte {
	u, _ := Authenticated(c)
	msg := fmt.Sprintf("permission denied: user %s (role %s) may not %s", u.Name, u.Role, what)
	return wire.Append(out, &wire.Frame{Op: f.Op, ID: f.ID, Status: wire.StatusForbidden, Value: []byte(msg)})
}

func refuse(out []byte, f *wire.Frame, msg string) []byte {
	return wire.Append(out, &wire.Frame{Op: f.Op, ID: f.ID, Status: wire.StatusUnauthenticated, Value: []byte(msg)})
}
