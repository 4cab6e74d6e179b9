package coord

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ftkv/limits"
)

func TestParseCluster(t *testing.T) {
	good := "# a comment\n3\n\nlocalhost 0 0 0\nlocalhost 7001 7002 7003 # inline\nalice@10.0.0.7 7001 7002 7003\n"
	c, err := ParseCluster("c.txt", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Servers) != 3 {
		t.Fatalf("got %d servers", len(c.Servers))
	}
	s := c.Servers[2]
	if s.Host != "alice@10.0.0.7" || s.ClientPort != 7001 || s.ServerPort != 7002 || s.CoordPort != 7003 || s.Line != 6 || s.Local() {
		t.Fatalf("server 2 = %+v", s)
	}
	if !c.Servers[0].Local() {
		t.Fatal("localhost must be local")
	}
	// Saved by an editor that writes a byte-order mark, with CRLF lines.
	bom := "\ufeff2\r\nlocalhost 0 0 0\r\nlocalhost 0 0 0\r\n"
	if c, err := ParseCluster("bom.txt", strings.NewReader(bom)); err != nil || len(c.Servers) != 2 {
		t.Fatalf("a file starting with a byte-order mark: %v", err)
	}
}

func TestParseClusterErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "c.txt: empty file"},
		{"bad count", "x\n", "c.txt:1: number of servers"},
		{"zero count", "0\n", "c.txt:1: number of servers"},
		{"count with extra", "3 4\n", "c.txt:1: expected the number of servers"},
		{"bad port", "1\nlocalhost abc 0 0\n", "c.txt:2: client_port must be a port number"},
		{"port too big", "1\nlocalhost 0 70000 0\n", "c.txt:2: server_port must be a port number"},
		{"negative port", "1\nlocalhost 0 0 -1\n", "c.txt:2: coord_port must be a port number"},
		{"few fields", "1\nlocalhost 0 0\n", "c.txt:2: expected \"<host> <client_port> <server_port> <coord_port>\", got 3 fields"},
		{"missing lines", "3\nlocalhost 0 0 0\n", "c.txt:2: 3 server lines announced, only 1 found"},
		{"extra lines", "1\nlocalhost 0 0 0\nlocalhost 0 0 0\n", "c.txt:3: more server lines"},
		{"dup port", "2\nlocalhost 7000 0 0\nlocalhost 0 7000 0\n", "c.txt:3: port 7000 on localhost is already used on line 2"},
		{"dup port on one line", "1\nlocalhost 7000 7000 0\n", "c.txt:2: port 7000 on localhost is given twice on this line"},
		{"shell chars", "1\nbad;host 0 0 0\n", "c.txt:2: host \"bad;host\" contains"},
		{"dash host", "1\n-oProxy 0 0 0\n", "c.txt:2: host \"-oProxy\" must not start"},
		{"setting twice", "1\nlocalhost 0 0 0\nfsync no\nmax_clients 10\nfsync no\n", "c.txt:5: fsync is already set on line 3"},
		{"limit twice", "1\nlocalhost 0 0 0\nmax_clients 10\nmax_clients 20\n", "c.txt:4: max_clients is already set on line 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCluster("c.txt", strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}

func TestLoadClusterMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.txt")
	_, err := LoadCluster(p)
	if err == nil || !strings.Contains(err.Error(), "nope.txt: no such file") {
		t.Fatalf("err = %v", err)
	}
}

func TestDefaultConfigParses(t *testing.T) {
	b, err := os.ReadFile("../config.txt")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCluster("config.txt", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Servers) != 3 {
		t.Fatalf("default config has %d servers, want 3", len(c.Servers))
	}
}

func TestParseClusterRemote(t *testing.T) {
	in := "2\nalice@10.0.0.5 0 0 0\nssh://bob@db2:2222 7001 7002 7003\nspare carol@10.0.0.9\n" +
		"ssh_identity /k/id\nssh_known_hosts /k/kh\nremote_bin /opt/ftkv/server\nremote_dir /var/lib/ftkv\ncopy_bin yes\nssh_connect_timeout 3\n"
	c, err := ParseCluster("c.txt", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Servers) != 2 || len(c.Spares) != 1 || c.Spares[0].Host != "carol@10.0.0.9" || c.Spares[0].Line != 4 {
		t.Fatalf("servers %+v spares %+v", c.Servers, c.Spares)
	}
	want := RemoteSettings{Identity: "/k/id", KnownHosts: "/k/kh", Binary: "/opt/ftkv/server", Dir: "/var/lib/ftkv", CopyBinary: true, ConnectTimeout: 3}
	if c.Remote != want {
		t.Fatalf("settings %+v, want %+v", c.Remote, want)
	}
	if !c.HasRemote() {
		t.Fatal("HasRemote false")
	}
	local, _ := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\n"))
	if local.HasRemote() {
		t.Fatal("a localhost cluster has no remote hosts")
	}
}

func TestParseDestination(t *testing.T) {
	cases := []struct{ in, dest, port, host, err string }{
		{"alice@10.0.0.7", "alice@10.0.0.7", "", "10.0.0.7", ""},
		{"db1", "db1", "", "db1", ""},
		{"ssh://alice@10.0.0.7:2222", "alice@10.0.0.7", "2222", "10.0.0.7", ""},
		{"ssh://alice@db1", "alice@db1", "", "db1", ""},
		{"ssh://alice@[fd00::7]:22", "alice@fd00::7", "22", "fd00::7", ""},
		{"ssh://alice@db1:0", "", "", "", "bad port"},
		{"ssh://alice@db1:x", "", "", "", "bad port"},
		{"@db1", "", "", "", "empty user"},
		{"alice@", "", "", "", "missing or bad host"},
	}
	for _, tc := range cases {
		dest, port, host, err := ParseDestination(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || dest != tc.dest || port != tc.port || host != tc.host {
			t.Errorf("%q: got %q %q %q %v, want %q %q %q", tc.in, dest, port, host, err, tc.dest, tc.port, tc.host)
		}
	}
}

func TestParseClusterRemoteErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"unknown setting", "1\nlocalhost 0 0 0\nsparse h\n", `c.txt:3: unknown setting "sparse"`},
		{"bad copy_bin", "1\nlocalhost 0 0 0\ncopy_bin maybe\n", "c.txt:3: copy_bin must be yes or no"},
		{"bad timeout", "1\nlocalhost 0 0 0\nssh_connect_timeout 0\n", "c.txt:3: ssh_connect_timeout must be"},
		{"quote in path", "1\nlocalhost 0 0 0\nremote_dir /a'b\n", "c.txt:3: remote_dir \"/a'b\" contains"},
		{"bad spare", "1\nlocalhost 0 0 0\nspare -oProxy\n", "c.txt:3: host \"-oProxy\" must not start"},
		{"bad ssh port", "1\nssh://a@h:99999 0 0 0\n", "c.txt:2: ssh destination"},
	}
	for _, tc := range cases {
		_, err := ParseCluster("c.txt", strings.NewReader(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want prefix %q", tc.name, err, tc.want)
		}
	}
}

// TestParseClusterSettingArity: a line whose first word is a setting is
// read as that setting wherever it stands, so a wrong number of values
// names the setting and what it takes, never "more server lines" or the
// server line's format.
func TestParseClusterSettingArity(t *testing.T) {
	type arity struct{ keyword, few, many string }
	cases := []arity{
		{"spare", "spare", "spare a b"},
		{"ssh_identity", "ssh_identity", "ssh_identity /k/id /k/id2"},
		{"ssh_known_hosts", "ssh_known_hosts", "ssh_known_hosts a b"},
		{"remote_bin", "remote_bin", "remote_bin /opt/a /opt/b"},
		{"remote_dir", "remote_dir", "remote_dir /a /b"},
		{"copy_bin", "copy_bin", "copy_bin yes no"},
		{"ssh_connect_timeout", "ssh_connect_timeout", "ssh_connect_timeout 3 4"},
		{"data_dir", "data_dir", "data_dir /my dir"},
		{"fsync", "fsync", "fsync always no"},
		{"fsync_secondary", "fsync_secondary", "fsync_secondary yes no"},
		{"snapshot_bytes", "snapshot_bytes", "snapshot_bytes 1 2"},
		{"sched", "sched", "sched batch normal"},
		{"tls_ca", "tls_ca", "tls_ca a b"},
		{"tls_cert", "tls_cert", "tls_cert a b"},
		{"tls_key", "tls_key", "tls_key a b"},
		{"tls_coord_cert", "tls_coord_cert", "tls_coord_cert a b"},
		{"tls_coord_key", "tls_coord_key", "tls_coord_key a b"},
		{"user", "user alice read", "user alice read $2a$10$x extra"},
		{"coordinator", "coordinator 127.0.0.1:9000 9001", "coordinator 127.0.0.1:9000 9001 9002 9003"},
	}
	for _, s := range limits.Settings {
		cases = append(cases, arity{s.Line, s.Line, s.Line + " 1 2"})
	}
	for _, tc := range cases {
		for _, v := range []struct{ name, line string }{{"few", tc.few}, {"many", tc.many}} {
			// After the server lines, and between them (where a line that
			// is not a setting would be a server line).
			for _, in := range []string{
				"1\nlocalhost 0 0 0\n" + v.line + "\n",
				"2\nlocalhost 0 0 0\n" + v.line + "\nlocalhost 0 0 0\n",
			} {
				t.Run(tc.keyword+"/"+v.name, func(t *testing.T) {
					_, err := ParseCluster("c.txt", strings.NewReader(in))
					if err == nil {
						t.Fatalf("%q: no error", v.line)
					}
					msg := err.Error()
					if !strings.HasPrefix(msg, "c.txt:3: ") || !strings.Contains(msg, tc.keyword) ||
						strings.Contains(msg, "more server lines") || strings.Contains(msg, "<host>") || strings.Contains(msg, "\n") {
						t.Fatalf("%q: error %q, want one line \"c.txt:3: …\" naming %s and what it takes", v.line, msg, tc.keyword)
					}
				})
			}
		}
	}
}

// TestParseClusterSettingArityMessage pins the wording for a few settings.
func TestParseClusterSettingArityMessage(t *testing.T) {
	for line, want := range map[string]string{
		"fsync":             `c.txt:3: fsync needs one value (always, everysec or no), got none`,
		"fsync always no":   `c.txt:3: fsync needs one value (always, everysec or no), got 2: "always no"`,
		"spare":             `c.txt:3: spare needs one value (a host: localhost or an ssh destination such as user@host), got none`,
		"max_clients":       `c.txt:3: max_clients needs one value (a whole number; default 10000), got none`,
		"session_ttl 1 2":   `c.txt:3: session_ttl needs one value (a duration such as 10s or 500ms; default 10m), got 2: "1 2"`,
		"output_budget 1 2": `c.txt:3: output_budget needs one value (a byte count such as 4194304, 4mb or 4MiB; default 32MiB), got 2: "1 2"`,
		"sparse a b":        `c.txt:3: unknown setting "sparse"`,
	} {
		_, err := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\n"+line+"\n"))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", line, err, want)
		}
	}
}

// TestCheckPorts: the coordinator's own ports (-c, -s) must differ from
// each other and from the ports of the local server lines; zero (any free
// port) never conflicts, nor do ports of other hosts, nor -c/-s in a
// group (its ports are the coordinator lines', checked by the parser).
func TestCheckPorts(t *testing.T) {
	cases := []struct {
		name, cfg string
		c, s      int
		want      string // "" = no error
	}{
		{"distinct", "1\nlocalhost 7001 7002 7003\n", 7000, 7004, ""},
		{"zeros", "1\nlocalhost 0 0 0\n", 0, 0, ""},
		{"same flags", "1\nlocalhost 0 0 0\n", 7000, 7000, "-c and -s are both 7000: each port needs its own number"},
		{"c is a client_port", "1\nlocalhost 7000 0 0\n", 7000, 7001,
			"c.txt:2: client_port 7000 on localhost is also -c, the coordinator's client port: each port needs its own number"},
		{"s is a coord_port", "2\nlocalhost 0 0 0\n127.0.0.1 0 0 7001\n", 7000, 7001,
			"c.txt:3: coord_port 7001 on 127.0.0.1 is also -s, the coordinator's servers port: each port needs its own number"},
		{"s is a server_port", "1\nlocalhost 0 7001 0\n", 0, 7001, "c.txt:2: server_port 7001 on localhost is also -s"},
		{"other host", "1\nalice@10.0.0.7 7000 7001 7002\n", 7000, 7001, ""},
		{"group", "1\nlocalhost 7000 0 0\ncoordinator 127.0.0.1:9000 9001 9002\n", 7000, 7000, ""},
	}
	// A port the user did not give is named as the flag's default.
	cl, _ := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 7001 0\n"))
	want := "c.txt:2: server_port 7001 on localhost is also -s (not given: default 7001), the coordinator's servers port"
	if err := cl.CheckPorts(FlagPort{Port: 7000, Default: true}, FlagPort{Port: 7001, Default: true}); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("defaults: error %v, want prefix %q", err, want)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := ParseCluster("c.txt", strings.NewReader(tc.cfg))
			if err != nil {
				t.Fatal(err)
			}
			err = cl.CheckPorts(FlagPort{Port: tc.c}, FlagPort{Port: tc.s})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want prefix %q", err, tc.want)
			}
		})
	}
}

// TestParseClusterSameHostPorts: two server lines with the same non-zero
// port on one host are refused, whatever the host is called (localhost,
// 127.0.0.1; another user or the ssh:// form of the same ssh host). An
// ssh port other than 22 on one address is another machine (port
// forwarding to containers): the same port there is allowed.
func TestParseClusterSameHostPorts(t *testing.T) {
	for _, in := range []string{
		"2\nlocalhost 7000 0 0\n127.0.0.1 0 0 7000\n",
		"2\nalice@10.0.0.7 7000 0 0\nbob@10.0.0.7 7000 0 0\n",
		"2\nalice@10.0.0.7 7000 0 0\nssh://alice@10.0.0.7:22 0 7000 0\n",
		"2\nssh://alice@10.0.0.7:2222 7000 0 0\nssh://bob@10.0.0.7:2222 0 7000 0\n",
	} {
		_, err := ParseCluster("c.txt", strings.NewReader(in))
		if err == nil || !strings.HasPrefix(err.Error(), "c.txt:3: port 7000 on ") || !strings.Contains(err.Error(), "already used on line 2") {
			t.Errorf("%q: error %v, want c.txt:3: port 7000 … already used on line 2", in, err)
		}
	}
	// Different hosts may use the same port, and so may two ssh ports of
	// one address (found by the session-10 review: refused before).
	for _, in := range []string{
		"2\nalice@10.0.0.7 7000 0 0\nalice@10.0.0.8 7000 0 0\n",
		"2\nssh://alice@10.0.0.7:2222 7001 7002 7003\nssh://alice@10.0.0.7:2223 7001 7002 7003\n",
		"2\nalice@10.0.0.7 7001 7002 7003\nssh://alice@10.0.0.7:2222 7001 7002 7003\n",
	} {
		if _, err := ParseCluster("c.txt", strings.NewReader(in)); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// TestParseClusterSpares: spare lines, unlike settings, may repeat.
func TestParseClusterSpares(t *testing.T) {
	c, err := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\nspare localhost\nspare bob@10.0.0.9\n"))
	if err != nil || len(c.Spares) != 2 {
		t.Fatalf("two spare lines: %+v, %v", c, err)
	}
}

func TestOverrideLines(t *testing.T) {
	c := &Cluster{Spares: []Spare{{Line: 5, Host: "bob@h1"}}, UserLine: 7}
	if err := c.OverrideLines(nil, nil); err != nil || len(c.Spares) != 1 || c.UserLine != 7 {
		t.Fatalf("no flags changed the lines: %v %+v", err, c)
	}
	if err := c.OverrideLines([]string{"localhost", "alice@h2"}, nil); err != nil {
		t.Fatal(err)
	}
	if len(c.Spares) != 2 || c.Spares[0].Host != "localhost" || c.Spares[1].Host != "alice@h2" || c.Spares[1].Line != 0 {
		t.Fatalf("spares %+v", c.Spares)
	}
	if err := c.OverrideLines([]string{"a b"}, nil); err == nil || !strings.HasPrefix(err.Error(), `-spare "a b": `) {
		t.Fatalf("bad spare: %v", err)
	}
	h := "$2a$04$" + strings.Repeat("a", 53)
	if err := c.OverrideLines(nil, []string{"app readwrite " + h, "app read " + h}); err == nil || !strings.Contains(err.Error(), "app is defined twice") {
		t.Fatalf("the same user twice: %v", err)
	}
}
