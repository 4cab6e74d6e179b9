package coord

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"ftkv/internal/auth"
	"ftkv/status"
)

func TestParseClusterUsers(t *testing.T) {
	h, err := auth.HashPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	good := "1\nlocalhost 0 0 0\nuser alice admin " + h + " # the operator\nuser bob read " + h + "\n"
	c, err := ParseCluster("c.txt", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Users.Len() != 2 || len(c.Servers) != 1 {
		t.Fatalf("%d users, %d servers", c.Users.Len(), len(c.Servers))
	}
	if u, ok := c.Users.Lookup("bob"); !ok || u.Role != auth.RoleRead || u.Hash != h {
		t.Errorf("bob = %+v", u)
	}
	if c, err := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\n")); err != nil || c.Users != nil {
		t.Errorf("no user lines: %v users, %v", c.Users, err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"short", "1\nlocalhost 0 0 0\nuser alice admin\n", "c.txt:3: expected \"user <name> <read|readwrite|admin> <password-hash>\""},
		{"role", "1\nlocalhost 0 0 0\nuser alice root " + h + "\n", "c.txt:3: user alice: role \"root\""},
		{"clear password", "1\nlocalhost 0 0 0\nuser alice admin hunter2hunter2\n", "c.txt:3: user alice: password hash (14 characters, not starting like a bcrypt hash) is not a bcrypt hash"},
		{"truncated hash", "1\nlocalhost 0 0 0\nuser alice admin " + h[:50] + "\n", "c.txt:3: user alice: password hash \"$2a$04$…\" is not a bcrypt hash"},
		{"dup", "1\nlocalhost 0 0 0\nuser alice admin " + h + "\n\nuser alice read " + h + "\n", "c.txt:5: user alice is already defined on line 3"},
		{"name", "1\nlocalhost 0 0 0\nuser al/ice admin " + h + "\n", "c.txt:3: user name \"al/ice\""},
	} {
		_, err := ParseCluster("c.txt", strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), h[10:]) {
			t.Errorf("%s: the error shows the hash: %v", tc.name, err)
		}
	}
}

func TestCheckAuth(t *testing.T) {
	h, _ := auth.HashPassword([]byte("pw"), bcrypt.MinCost)
	parse := func(s string) *Cluster {
		c, err := ParseCluster("c.txt", strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	local := parse("1\nlocalhost 0 0 0\nuser alice admin " + h + "\n")
	remote := parse("2\nlocalhost 0 0 0\nbob@10.0.0.7 0 0 0\nuser alice admin " + h + "\n")
	none := parse("1\nlocalhost 0 0 0\n")
	for _, tc := range []struct {
		name string
		o    Options
		want string // "" = accepted
	}{
		{"no users", Options{Cluster: none}, ""},
		{"users without TLS", Options{Cluster: local}, "user lines need TLS"},
		{"insecure on loopback", Options{Cluster: local, InsecureAuth: true}, ""},
		{"insecure bound to all", Options{Cluster: local, InsecureAuth: true, Bind: "0.0.0.0"}, "-bind 0.0.0.0 is not a loopback address"},
		{"insecure with a remote server", Options{Cluster: remote, InsecureAuth: true}, "c.txt:3: -insecure-auth: server on bob@10.0.0.7 is not on this host"},
		{"insecure without users", Options{Cluster: none, InsecureAuth: true}, "no user lines"},
	} {
		err := checkAuth(&tc.o)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	st := &status.Cluster{Epoch: 3, Servers: []status.Server{{ID: 0, Addr: "127.0.0.1:1", PeerAddr: "127.0.0.1:2", CtlAddr: "127.0.0.1:3",
		Host: "alice@h", PID: 42, Incarnation: 2, State: "serving", PrimaryKeys: 10, RSSBytes: 1 << 20, MetricsAddr: "127.0.0.1:4",
		LogBytes: 5, Fsync: "always", DiskError: true}},
		Coordinators: []status.Coordinator{{ID: 0, ClientAddr: "127.0.0.1:7000", ServersAddr: "127.0.0.1:7001", RaftAddr: "127.0.0.1:7002", Role: "leader"}}}
	st.Redact()
	s, co := st.Servers[0], st.Coordinators[0]
	if !st.Redacted || s.PeerAddr != "" || s.CtlAddr != "" || s.Host != "" || s.PID != 0 || s.Incarnation != 0 || s.RSSBytes != 0 ||
		s.MetricsAddr != "" || s.LogBytes != 0 || s.Fsync != "" || co.ServersAddr != "" || co.RaftAddr != "" {
		t.Errorf("details left: %+v %+v", s, co)
	}
	if s.Addr == "" || s.State != "serving" || s.PrimaryKeys != 10 || !s.DiskError || co.ClientAddr == "" || co.Role != "leader" || st.Epoch != 3 {
		t.Errorf("what any user sees was removed: %+v %+v", s, co)
	}
}

func TestSecretsInputAndChildEnv(t *testing.T) {
	t.Setenv("FTKV_PASSWORD", "operator-pw")
	t.Setenv("FTKV_SECRET", "old-secret")
	for _, kv := range childEnv() {
		if strings.HasPrefix(kv, "FTKV_PASSWORD=") || strings.HasPrefix(kv, "FTKV_SECRET=") {
			t.Errorf("a spawned server inherits %s", kv)
		}
	}
	in := SecretsInput(SpawnSpec{Secret: "s3", Users: "user a read x\n"})
	if in != "s3\nuser a read x\n" {
		t.Errorf("SecretsInput = %q", in)
	}
	args := strings.Join(serverArgs(SpawnSpec{Secret: "s3", Users: "user a read x\n"}, "127.0.0.1"), " ")
	if strings.Contains(args, "s3") || strings.Contains(args, "user a") || !strings.HasSuffix(args, "-secrets-stdin") {
		t.Errorf("server args %q", args)
	}
}
