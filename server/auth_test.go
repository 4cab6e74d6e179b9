package server

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"ftkv/internal/auth"
	"ftkv/timing"
	"ftkv/wire"
)

func testUsers(t *testing.T) *auth.Table {
	t.Helper()
	var us []auth.User
	for _, u := range []struct {
		name string
		role auth.Role
	}{{"reader", auth.RoleRead}, {"writer", auth.RoleReadWrite}, {"root", auth.RoleAdmin}} {
		h, err := auth.HashPassword([]byte(u.name+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		us = append(us, auth.User{Name: u.name, Role: u.role, Hash: h})
	}
	tab, err := auth.NewTable(us)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// startAuthPair runs two servers (with users, when users is not nil)
// holding shards 0 and 1, and returns them.
func startAuthPair(t *testing.T, users *auth.Table) (a, b *testServer) {
	fc := startFakeCoord(t)
	start := func(id uint32) *testServer {
		ts, _ := runTestServer(t, fc, Config{ID: id, Incarnation: 1, CoordAddr: fc.ln.Addr().String(), Secret: testSecret,
			Users: users, DumpDir: t.TempDir(), Timing: timing.Default(), Loops: 1,
			Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		return ts
	}
	a, b = start(0), start(1)
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	return a, b
}

// hello opens a client connection to addr and authenticates as user.
func hello(t *testing.T, addr, user, pw string) (*conn, wire.Frame) {
	t.Helper()
	c := dialConn(t, addr, false)
	ans, err := c.do(&wire.Frame{Op: wire.OpHello, Key: []byte(user), Value: []byte(pw)}, 10*time.Second)
	if err != nil {
		t.Fatalf("HELLO as %s: %v", user, err)
	}
	return c, ans
}

// closedAfter reports whether the server closed c (its next read ends).
func closedAfter(c *conn) bool {
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.br.ReadByte()
	return errors.Is(err, io.EOF) || err != nil && strings.Contains(err.Error(), "reset")
}

func TestClientPortAuthentication(t *testing.T) {
	a, _ := startAuthPair(t, testUsers(t))
	key := []byte(keysOf("auth", 0, 2, 1)[0])
	get := &wire.Frame{Op: wire.OpGet, Epoch: 1, Key: key}

	t.Run("no HELLO", func(t *testing.T) {
		c := dialConn(t, a.client, false)
		ans, err := c.do(&wire.Frame{Op: wire.OpGet, Epoch: 1, Key: key}, 5*time.Second)
		if err != nil || ans.Status != wire.StatusUnauthenticated || !strings.Contains(string(ans.Value), "authentication required") {
			t.Fatalf("GET without HELLO: %v %v %q", err, ans.Status, ans.Value)
		}
		if !closedAfter(c) {
			t.Error("connection left open after the refusal")
		}
	})
	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", "writer", "reader-pw"}, {"unknown user", "nobody", "writer-pw"}, {"no password", "writer", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ans := hello(t, a.client, tc.user, tc.pw)
			if ans.Status != wire.StatusUnauthenticated || !strings.Contains(string(ans.Value), "unknown user or wrong password") {
				t.Fatalf("HELLO: %v %q", ans.Status, ans.Value)
			}
			if !closedAfter(c) {
				t.Error("connection left open after a failed HELLO")
			}
		})
	}
	t.Run("read user", func(t *testing.T) {
		c, ans := hello(t, a.client, "reader", "reader-pw")
		if ans.Status != wire.StatusOK || string(ans.Value) != "read" {
			t.Fatalf("HELLO: %v %q", ans.Status, ans.Value)
		}
		for _, op := range []wire.Op{wire.OpPut, wire.OpDelete, wire.OpAppend, wire.OpCAS} {
			ans, err := c.do(&wire.Frame{Op: op, Epoch: 1, Key: key, Value: []byte("v"), Client: 7, Seq: 1, Floor: 1}, 5*time.Second)
			if err != nil || ans.Status != wire.StatusForbidden || !strings.Contains(string(ans.Value), "user reader (role read) may not "+op.String()) {
				t.Fatalf("%s as reader: %v %v %q", op, err, ans.Status, ans.Value)
			}
		}
		// The connection stays open and reads.
		if ans, err := c.doRetry(get, 5*time.Second); err != nil || ans.Status != wire.StatusNotFound {
			t.Fatalf("GET as reader after refusals: %v %v %q", err, ans.Status, ans.Value)
		}
	})
	t.Run("readwrite and admin", func(t *testing.T) {
		for i, u := range []string{"writer", "root"} {
			c, ans := hello(t, a.client, u, u+"-pw")
			if ans.Status != wire.StatusOK {
				t.Fatalf("HELLO as %s: %v %q", u, ans.Status, ans.Value)
			}
			val := []byte{'v', byte('0' + i)}
			if ans, err := c.doRetry(&wire.Frame{Op: wire.OpPut, Epoch: 1, Key: key, Value: val, Client: uint64(10 + i), Seq: 1, Floor: 1}, 5*time.Second); err != nil || ans.Status != wire.StatusOK {
				t.Fatalf("PUT as %s: %v %v %q", u, err, ans.Status, ans.Value)
			}
			if ans, err := c.doRetry(get, 5*time.Second); err != nil || ans.Status != wire.StatusOK || string(ans.Value) != string(val) {
				t.Fatalf("GET as %s: %v %v %q", u, err, ans.Status, ans.Value)
			}
			if ans, err := c.do(&wire.Frame{Op: wire.OpHello, Key: []byte(u), Value: []byte(u + "-pw")}, 5*time.Second); err != nil || ans.Status != wire.StatusBadRequest {
				t.Fatalf("second HELLO: %v %v", err, ans.Status)
			}
		}
	})
	t.Run("probe before the password", func(t *testing.T) {
		// Answered OK, authenticating nothing: the GET after it is refused.
		c := dialConn(t, a.client, false)
		ans, err := c.do(&wire.Frame{Op: wire.OpHello, Seq: wire.HelloProbe}, 5*time.Second)
		if err != nil || ans.Status != wire.StatusOK || ans.Seq != wire.HelloProbe {
			t.Fatalf("probe: %v %v %q", err, ans.Status, ans.Value)
		}
		ans, err = c.do(get, 5*time.Second)
		if err != nil || ans.Status != wire.StatusUnauthenticated {
			t.Fatalf("GET after a probe: %v %v %q", err, ans.Status, ans.Value)
		}
		// And a HELLO after one logs in.
		c = dialConn(t, a.client, false)
		if ans, err := c.do(&wire.Frame{Op: wire.OpHello, Seq: wire.HelloProbe}, 5*time.Second); err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("probe: %v %v %q", err, ans.Status, ans.Value)
		}
		if ans, err := c.do(&wire.Frame{Op: wire.OpHello, Key: []byte("reader"), Value: []byte("reader-pw")}, 5*time.Second); err != nil || ans.Status != wire.StatusOK || string(ans.Value) != "read" {
			t.Fatalf("HELLO after a probe: %v %v %q", err, ans.Status, ans.Value)
		}
		if ans, err := c.doRetry(get, 5*time.Second); err != nil || ans.Status != wire.StatusOK && ans.Status != wire.StatusNotFound {
			t.Fatalf("GET as reader after the probe: %v %v %q", err, ans.Status, ans.Value)
		}
	})
	t.Run("oversized first frame", func(t *testing.T) {
		c := dialConn(t, a.client, false)
		_, err := c.do(&wire.Frame{Op: wire.OpHello, Key: []byte("writer"), Value: make([]byte, 8<<10)}, 5*time.Second)
		if err == nil {
			t.Error("an 8 KiB HELLO was answered")
		}
	})
}

func TestClientPortWithoutUsersAcceptsHello(t *testing.T) {
	a, _ := startAuthPair(t, nil)
	c, ans := hello(t, a.client, "anyone", "anything")
	if ans.Status != wire.StatusOK {
		t.Fatalf("HELLO without users: %v %q", ans.Status, ans.Value)
	}
	key := []byte(keysOf("noauth", 0, 2, 1)[0])
	if ans, err := c.doRetry(&wire.Frame{Op: wire.OpPut, Epoch: 1, Key: key, Value: []byte("v"), Client: 3, Seq: 1, Floor: 1}, 5*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("PUT: %v %v %q", err, ans.Status, ans.Value)
	}
	raw := dialConn(t, a.client, false)
	if ans, err := raw.doRetry(&wire.Frame{Op: wire.OpGet, Epoch: 1, Key: key}, 5*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("GET without HELLO: %v %v %q", err, ans.Status, ans.Value)
	}
}
