package coord

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{"shell chars", "1\nbad;host 0 0 0\n", "c.txt:2: host \"bad;host\" contains"},
		{"dash host", "1\n-oProxy 0 0 0\n", "c.txt:2: host \"-oProxy\" must not start"},
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
