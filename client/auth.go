package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"ftkv/wire"
)

// Sentinel errors of authentication (test with errors.Is).
var (
	// ErrAuth: the cluster refused the client's credentials (none given
	// to a cluster with users, an unknown user, a wrong password, too
	// many failed attempts), or the client refused to send its password
	// in clear. Never retried.
	ErrAuth = errors.New("ftkv: authentication failed")
	// ErrPermission: the user's role does not allow the operation (a
	// read user writing, a non-admin stopping the cluster). Never
	// retried; the client stays usable for what the role allows.
	ErrPermission = errors.New("ftkv: permission denied")
)

// WithAuth makes the client authenticate as user with password on every
// connection it opens (coordinators and servers), as the first frame
// (HELLO). A cluster with users serves a client only after it; one
// without users ignores it. The password is sent only over TLS or to a
// loopback address: it never crosses a network in clear.
func WithAuth(user, password string) Option {
	return func(o *options) { o.user, o.password = user, password }
}

// minHelloWait bounds the wait for HELLO's answer from below: a server
// checks a new password with bcrypt (a fraction of a second) before it
// answers, even when the handshake bound is short.
const minHelloWait = 5 * time.Second // timing: exception — bcrypt's cost, not the cluster's timing

// hello authenticates cn (over nc, to addr) when the client has
// credentials. A refusal is ErrAuth; a connection error is returned as
// is (the caller retries).
func (c *Client) hello(ctx context.Context, cn *conn, nc net.Conn, addr string) error {
	if c.opts.user == "" {
		return nil
	}
	if !inPrivate(nc) {
		return fmt.Errorf("%w: not sending the password of user %s in clear to %s (a non-loopback address without TLS)", ErrAuth, c.opts.user, addr)
	}
	hctx, cancel := context.WithTimeout(ctx, max(c.opts.timing.Handshake, minHelloWait))
	defer cancel()
	if err := probeClear(hctx, cn, nc, addr); err != nil {
		return err
	}
	reply, err := cn.roundTrip(hctx, &wire.Frame{Op: wire.OpHello, Key: []byte(c.opts.user), Value: []byte(c.opts.password)})
	if err != nil {
		return err
	}
	switch reply.Status {
	case wire.StatusOK:
		return nil
	case wire.StatusUnauthenticated:
		return fmt.Errorf("%w: %s as user %s: %s", ErrAuth, addr, c.opts.user, reply.Value)
	}
	return fmt.Errorf("ftkv: %s answered HELLO with %s: %s", addr, reply.Status, reply.Value)
}

// probeClear asks, on a connection without TLS, whether the port takes a
// HELLO in clear before the password is sent (a review saw a client that
// forgot its CA send the password to a TLS port on loopback, in clear,
// and only then be refused): a TLS port's refusal is ErrAuth.
func probeClear(ctx context.Context, cn *conn, nc net.Conn, addr string) error {
	if _, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return nil
	}
	reply, err := cn.roundTrip(ctx, &wire.Frame{Op: wire.OpHello, Seq: wire.HelloProbe})
	if err != nil {
		return err
	}
	if reply.Status != wire.StatusOK {
		return fmt.Errorf("%w: %s: %s", ErrAuth, addr, reply.Value)
	}
	return nil
}

// inPrivate reports whether what is written to nc stays private: it is a
// TLS connection, or it goes to a loopback address.
func inPrivate(nc net.Conn) bool {
	if _, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return true
	}
	var ip net.IP
	switch a := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UnixAddr:
		return true
	default:
		if a == nil {
			return false
		}
		h, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return false
		}
		ip = net.ParseIP(h)
	}
	return ip != nil && ip.IsLoopback()
}

// refusal is the error of an answer refusing the request for want of
// credentials or permission (nil for any other answer).
func refusal(reply wire.Frame, addr string) error {
	switch reply.Status {
	case wire.StatusForbidden:
		// (The server's reason starts with the error's own words.)
		return fmt.Errorf("%w: %s", ErrPermission, strings.TrimPrefix(string(reply.Value), "permission denied: "))
	case wire.StatusUnauthenticated:
		return fmt.Errorf("%w: %s: %s", ErrAuth, addr, reply.Value)
	}
	return nil
}

// CheckCredentials asks a coordinator whether user and password are
// valid credentials of the cluster, on a connection of their own (the
// client's own credentials are not involved), and returns the user's
// role: "read", "readwrite" or "admin" ("" when the cluster has no
// users). Refused credentials are ErrAuth. A front door (bin/gateway)
// checks its own clients' logins with it.
func (c *Client) CheckCredentials(ctx context.Context, user, password string) (string, error) {
	var last error
	for _, addr := range c.coordOrder() {
		role, err := c.checkAt(ctx, addr, user, password)
		if err == nil || errors.Is(err, ErrAuth) || ctx.Err() != nil {
			return role, err
		}
		last = err
	}
	return "", last
}

func (c *Client) checkAt(ctx context.Context, addr, user, password string) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, max(c.opts.timing.Handshake, minHelloWait))
	defer cancel()
	nc, err := c.opts.dial(dctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("ftkv: coordinator %s: %w", addr, err)
	}
	cn := newConn(nc, addr)
	defer cn.fail(ErrClosed)
	if !inPrivate(nc) {
		return "", fmt.Errorf("%w: not sending the password of user %s in clear to %s (a non-loopback address without TLS)", ErrAuth, user, addr)
	}
	if err := probeClear(dctx, cn, nc, addr); err != nil {
		if errors.Is(err, ErrAuth) {
			return "", err
		}
		return "", fmt.Errorf("ftkv: coordinator %s: %w", addr, err)
	}
	reply, err := cn.roundTrip(dctx, &wire.Frame{Op: wire.OpHello, Key: []byte(user), Value: []byte(password)})
	if err != nil {
		return "", fmt.Errorf("ftkv: coordinator %s: %w", addr, err)
	}
	switch reply.Status {
	case wire.StatusOK:
		return string(reply.Value), nil
	case wire.StatusUnauthenticated:
		return "", fmt.Errorf("%w: %s", ErrAuth, reply.Value)
	}
	return "", fmt.Errorf("ftkv: coordinator %s answered HELLO with %s: %s", addr, reply.Status, reply.Value)
}
