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
