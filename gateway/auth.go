package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/tidwall/redcon"

	"ftkv/client"
	"ftkv/internal/auth"
	"ftkv/status"
)

// Logins (Config.Authenticate set): the gateway talks to the cluster as
// its own user (bin/gateway -user), one client shared by every Redis and
// HTTP client, so that their commands still share batches. Its clients
// log in with the cluster's users — AUTH [user] password, HELLO … AUTH
// user password, HTTP Basic — checked by a coordinator
// (client.CheckCredentials); the gateway then allows each connection
// what its user's role allows (read: no write commands, admin: the
// status's details). Passing each client's credentials through would
// need a cluster client per user and lose the shared batches.

// Authenticator checks a user's password against the cluster's users and
// returns the role's name: "read", "readwrite", "admin", or "" when the
// cluster has no users. (*client.Client).CheckCredentials is one; a
// refusal wraps client.ErrAuth.
type Authenticator func(ctx context.Context, user, password string) (string, error)

// defaultUser is the user of AUTH <password>: Redis's "default".
const defaultUser = "default"

// Redis's answers about logins, word for word.
const (
	errNoAuth       Error = "NOAUTH Authentication required."
	errHelloNoAuth  Error = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	errWrongPass    Error = "WRONGPASS invalid username-password pair or user is disabled."
	errThrottled    Error = "WRONGPASS too many failed authentication attempts from this address; retry later"
	errAuthDisabled Error = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
)

// authTimeout is how long a RESP connection may stay open without
// logging in when there are users (a client that reconnects, as redis-cli
// does, logs in again). timing: exception — a bound on idle strangers,
// unrelated to the failure timeout. (A variable for tests.)
var authTimeout = 10 * time.Second

// logins checks and remembers the gateway's clients' logins
// (auth.LoginCache: never a password); failures are throttled per client
// address before the cluster is asked, so that a guesser does not get
// the gateway's own address throttled by the coordinators.
type logins struct {
	check    Authenticator
	counted  func(outcome string) // Config.OnLogin (nil: not counted)
	throttle *auth.Throttle
	ok       *auth.LoginCache[auth.Role]
	log      zerolog.Logger
}

func newLogins(check Authenticator, counted func(string), log zerolog.Logger) *logins {
	return &logins{check: check, counted: counted, throttle: auth.NewThrottle(0, 0, "gateway", log), ok: auth.NewLoginCache[auth.Role](), log: log}
}

// login returns user's role (errWrongPass, errThrottled, or the
// cluster's error when it could not say).
func (l *logins) login(ctx context.Context, remote net.Addr, user, password string) (auth.Role, error) {
	r, err := l.check1(ctx, remote, user, password)
	if l.counted != nil {
		switch {
		case err == nil:
			l.counted(auth.LoginOK)
		case errors.Is(err, errWrongPass):
			l.counted(auth.LoginDenied)
		case errors.Is(err, errThrottled):
			l.counted(auth.LoginThrottled)
		default:
			l.counted(auth.LoginUnchecked)
		}
	}
	return r, err
}

func (l *logins) check1(ctx context.Context, remote net.Addr, user, password string) (auth.Role, error) {
	ip := auth.IP(remote)
	if r, ok := l.ok.Lookup(ip, []byte(user), []byte(password)); ok {
		return r, nil
	}
	if !l.throttle.Reserve(ip) {
		return auth.RoleNone, errThrottled
	}
	if r, ok := l.ok.Admitted(ip, []byte(user), []byte(password)); ok {
		// Logged in from another address (a client's other host): the
		// cluster would say the same.
		l.throttle.Settle(ip, false)
		return r, nil
	}
	if len(user) > auth.MaxUserName || len(password) > auth.MaxPassword {
		// No user has such a name or password (bcrypt reads 72 bytes):
		// refused here, and counted against the address. Passed on, the
		// coordinator refused the frame, and the client read its error
		// unthrottled (a review).
		l.throttle.Settle(ip, true)
		return auth.RoleNone, errWrongPass
	}
	name, err := l.check(ctx, user, password)
	if errors.Is(err, client.ErrAuth) {
		l.throttle.Settle(ip, true)
		l.log.Warn().Str("port", "gateway").Str("user", printable(user)).Str("remote", ip).Msg("authentication failed")
		return auth.RoleNone, errWrongPass
	}
	l.throttle.Settle(ip, false)
	if err != nil {
		return auth.RoleNone, err
	}
	r := auth.RoleAdmin // a cluster without users allows everything
	if name != "" {
		if r, err = auth.ParseRole(name); err != nil {
			return auth.RoleNone, err
		}
	}
	l.ok.Remember(ip, []byte(user), []byte(password), r)
	return r, nil
}

// printable is a user name as logged: at most 64 bytes, quoted if odd.
func printable(user string) string {
	s := user[:min(len(user), auth.MaxUserName)]
	if auth.ValidName(s) != nil {
		return strconv.Quote(s)
	}
	return s
}

// allowed says whether the session may run sp now (nil) or the error to
// answer. Only on the session's worker.
func (s *session) allowed(sp *spec) error {
	if s.g.logins == nil {
		return nil
	}
	r := s.role()
	switch {
	case r == auth.RoleNone:
		if slices.Contains(sp.flags, "no-auth") || sp.name == "hello" || sp.name == "quit" {
			return nil
		}
		return errNoAuth
	case slices.Contains(sp.flags, "write") && !r.CanWrite():
		return Error("NOPERM User " + s.user + " has no permissions to run the '" + sp.name + "' command")
	}
	return nil
}

// role is the session's role (RoleNone until it logs in).
func (s *session) role() auth.Role { return auth.Role(s.authRole.Load()) }

// mayBatch: the session's plain GETs and SETs may join batches (with
// logins, only a user that may write: the batch does not check roles).
func (s *session) mayBatch() bool {
	return s.g.logins == nil || s.role().CanWrite()
}

// authenticate logs the session in as user (AUTH, HELLO … AUTH).
func (s *session) authenticate(ctx context.Context, user, password string) error {
	if s.g.logins == nil {
		return nil // no users: any credentials are accepted, as Redis without requirepass
	}
	r, err := s.g.logins.login(ctx, s.remote, user, password)
	if err != nil {
		return err
	}
	s.user = user
	s.authRole.Store(int32(r))
	s.lim.AuthedAsync()
	return nil
}

func cmdAuth(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	if len(args) > 3 {
		return out, Error("ERR syntax error")
	}
	if s.g.logins == nil {
		// As Redis without users: the default user needs no password,
		// so AUTH default <anything> is let in, any other user is not.
		switch {
		case len(args) == 2:
			return out, errAuthDisabled
		case string(args[1]) == defaultUser:
			return redcon.AppendOK(out), nil
		}
		return out, Error("WRONGPASS invalid username-password pair or user is disabled.")
	}
	user, pw := defaultUser, string(args[1])
	if len(args) == 3 {
		user, pw = string(args[1]), string(args[2])
	}
	if err := s.authenticate(ctx, user, pw); err != nil {
		return out, err
	}
	return redcon.AppendOK(out), nil
}

// statusFor is st as a client of role r may see it (a redacted copy for
// non-admins when there are logins).
func (g *Gateway) statusFor(st *status.Cluster, r auth.Role) *status.Cluster {
	if g.logins == nil || st == nil || r.IsAdmin() {
		return st
	}
	cp := *st
	cp.Servers = slices.Clone(st.Servers)
	cp.Coordinators = slices.Clone(st.Coordinators)
	cp.Redact()
	return &cp
}

type roleKey struct{}

// httpAuth wraps h with HTTP Basic authentication: 401 without valid
// credentials, 403 for a write by a read user; the role travels in the
// request's context (the status is redacted for non-admins).
func (g *Gateway) httpAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="ftkv", charset="UTF-8"`)
			httpError(w, http.StatusUnauthorized, "authentication required (HTTP Basic, a user of the cluster)")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
		role, err := g.logins.login(ctx, remoteAddr(r), user, pw)
		cancel()
		switch {
		case errors.Is(err, errWrongPass), errors.Is(err, errThrottled):
			w.Header().Set("WWW-Authenticate", `Basic realm="ftkv", charset="UTF-8"`)
			httpError(w, http.StatusUnauthorized, err.Error())
			return
		case err != nil:
			storeError(w, err)
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		default:
			if !role.CanWrite() {
				httpError(w, http.StatusForbidden, "permission denied: user "+user+" (role "+role.String()+") may not "+r.Method)
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), roleKey{}, role)))
	})
}

// httpRole is the role a request authenticated with (admin without logins).
func httpRole(r *http.Request) auth.Role {
	if v, ok := r.Context().Value(roleKey{}).(auth.Role); ok {
		return v
	}
	return auth.RoleAdmin
}

func remoteAddr(r *http.Request) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		return a
	}
	return nil
}
