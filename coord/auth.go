package coord

import (
	"errors"
	"fmt"
	"net"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/auth"
	"ftkv/internal/hostname"
	"ftkv/status"
	"ftkv/wire"
)

// Client authentication (the config's "user" lines): the coordinator
// checks clients on its client port (view, status, shutdown) and hands
// the users to every server it spawns, with the cluster secret, on the
// server's standard input (spawn.go, ssh.go): never on a command line,
// in an environment variable (/proc/<pid>/environ) or in a file.

// errPlaintextAuth: users without TLS, and no -insecure-auth.
var errPlaintextAuth = errors.New("user lines need TLS (tls_cert, tls_key and tls_ca lines) so that passwords never cross the network in clear; -insecure-auth allows them without TLS for a cluster on loopback only (development)")

// tlsConfigured reports whether every link of the cluster is encrypted.
// TLS is configured by the tls_cert, tls_key and tls_ca lines (or flags).
func (o *Options) tlsConfigured() bool {
	return o.Cluster != nil && o.Cluster.TLS.override(o.TLSFlags).Enabled()
}

// checkAuth validates the users' side of opts (New): users need TLS, or
// -insecure-auth with every process on loopback.
func checkAuth(o *Options) error {
	if o.Cluster.Users.Len() == 0 {
		if o.InsecureAuth {
			return errors.New("-insecure-auth: the config has no user lines")
		}
		return nil
	}
	if o.tlsConfigured() {
		return nil
	}
	if !o.InsecureAuth {
		at := o.Cluster.Path
		if o.Cluster.UserLine > 0 {
			at = fmt.Sprintf("%s:%d", at, o.Cluster.UserLine)
		} else if o.Cluster.Users != nil {
			at = "-user"
		}
		return fmt.Errorf("%s: %w", at, errPlaintextAuth)
	}
	if o.Bind != "" {
		if ip := net.ParseIP(o.Bind); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("-insecure-auth: -bind %s is not a loopback address (passwords would cross the network in clear; configure TLS)", o.Bind)
		}
	}
	for _, s := range o.Cluster.Servers {
		if !s.Local() {
			return fmt.Errorf("%s:%d: -insecure-auth: server on %s is not on this host (passwords would cross the network in clear; configure TLS)", o.Cluster.Path, s.Line, s.Host)
		}
	}
	for _, s := range o.Cluster.Spares {
		if !hostname.IsLocal(s.Host) {
			at := fmt.Sprintf("%s:%d", o.Cluster.Path, s.Line)
			if s.Line == 0 {
				at = "-spare"
			}
			return fmt.Errorf("%s: -insecure-auth: spare %s is not on this host (configure TLS)", at, s.Host)
		}
	}
	for _, cs := range o.Cluster.Coordinators {
		if ip := net.ParseIP(cs.Host); !hostname.IsLocal(cs.Host) && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%s:%d: -insecure-auth: coordinator on %s is not on loopback (configure TLS)", o.Cluster.Path, cs.Line, cs.Host)
		}
	}
	return nil
}

// newGate is the client port's authentication (nil without users).
func (c *Coordinator) newGate() *auth.Gate {
	users := c.opts.Cluster.Users
	if users.Len() == 0 {
		return nil
	}
	v := auth.NewVerifier(users, auth.VerifierConfig{Port: "coordinator client", Log: c.log, OnLogin: c.met.login})
	return auth.NewGate(v, 2*c.opts.Timing.Handshake)
}

// usersForServers is the users as servers get them ("" without users).
func (c *Coordinator) usersForServers() string {
	if c.opts.Cluster.Users.Len() == 0 {
		return ""
	}
	return c.opts.Cluster.Users.Encode()
}

// guardClient applies authentication to f on the client port: it answers
// HELLO and refuses SHUTDOWN to anyone but an admin; done says f was
// answered (into out, with the action). Only on conn's event loop.
func (c *Coordinator) guardClient(conn gnet.Conn, f *wire.Frame, out []byte) ([]byte, gnet.Action, bool) {
	if c.gate == nil {
		if f.Op == wire.OpHello {
			return answer(out, f, wire.StatusOK, 0, nil), gnet.None, true
		}
		return out, gnet.None, false
	}
	role := auth.RoleOf(conn)
	switch {
	case role == auth.RoleNone:
		out, a := c.gate.Hello(conn, f, out)
		return out, a, true
	case f.Op == wire.OpHello:
		return answer(out, f, wire.StatusBadRequest, 0, []byte("already authenticated")), gnet.None, true
	case f.Op == wire.OpShutdown && !role.IsAdmin():
		return auth.Forbidden(conn, f, out, "stop the cluster (admin only)"), gnet.None, true
	}
	return out, gnet.None, false
}

// shutdownAllowed says whether conn may stop the cluster: an admin
// (with users), or a client on this host (without: none authenticates).
func (c *Coordinator) shutdownAllowed(conn gnet.Conn) bool {
	if c.gate != nil {
		return auth.RoleOf(conn).IsAdmin()
	}
	ra, ok := conn.RemoteAddr().(*net.TCPAddr)
	return ok && ra.IP.IsLoopback()
}

// statusFor is st as conn may see it: whole for an admin or without
// users, without its details for other users (status.Cluster.Redact).
func (c *Coordinator) statusFor(conn gnet.Conn, st *status.Cluster) *status.Cluster {
	if !c.seesWhole(conn) {
		st.Redact()
	}
	return st
}

// seesWhole says whether conn may see the whole status (statusFor).
func (c *Coordinator) seesWhole(conn gnet.Conn) bool {
	return c.gate == nil || auth.RoleOf(conn).IsAdmin()
}
