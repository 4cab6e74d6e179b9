package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/hashring"
	"ftkv/internal/testkit/testcluster"
)

// cliResult is what one run of bin/client produced.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs bin/client with args against the coordinator at addr (empty:
// no -h/-p flags are added; a list: -h with it), feeding it stdin. A run that does not end
// within 30s fails the test.
func runCLI(t *testing.T, bin, addr, stdin string, args ...string) cliResult {
	t.Helper()
	if strings.Contains(addr, ",") {
		args = append([]string{"-h", addr}, args...) // a group's list
	} else if addr != "" {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		args = append([]string{"-h", host, "-p", port}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "client"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("client %q did not finish within 30s", shortArgs(args))
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("client %q: %v", shortArgs(args), err)
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code}
}

// shortArgs keeps failure messages readable when an argument is 64 KiB.
func shortArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if len(a) > 40 {
			a = fmt.Sprintf("%s...(%d bytes)", a[:20], len(a))
		}
		out[i] = a
	}
	return out
}

// oneErrorLine checks that stderr is exactly one line and not a Go crash.
func oneErrorLine(t *testing.T, what, stderr string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || len(strings.TrimSpace(stderr)) == 0 {
		t.Errorf("%s: stderr is not exactly one line: %q", what, stderr)
	}
	for _, bad := range []string{"goroutine", "panic"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("%s: stderr contains %q: %q", what, bad, stderr)
		}
	}
}

// cliScript is a command script for the session modes and the exact output
// it must produce. Keys carry prefix so several scripts can share a cluster.
// live maps the keys that exist afterwards to their values.
func cliScript(prefix string) (script, want string, live map[string]string) {
	k := func(s string) string { return prefix + s }
	var in, out strings.Builder
	step := func(line, answer string) {
		in.WriteString(line + "\n")
		out.WriteString(answer + "\n")
	}
	step(fmt.Sprintf(`P "%s" "1"`, k("a")), "OK")
	step(fmt.Sprintf(`G "%s"`, k("a")), "1")
	step(fmt.Sprintf(`G "%s"`, k("absent")), "(nil)")
	in.WriteString("# a comment and a blank line produce no output\n\n")
	step(fmt.Sprintf(`P "%s" "x"`, k("d")), "OK")
	step(fmt.Sprintf(`D "%s"`, k("d")), "OK")
	step(fmt.Sprintf(`G "%s"`, k("d")), "(nil)")
	step(fmt.Sprintf(`D "%s"`, k("never")), "OK") // deleting an absent key succeeds
	// Test-and-set.
	step(fmt.Sprintf(`P "%s" "old"`, k("t")), "OK")
	step(fmt.Sprintf(`T "%s" "old" "new"`, k("t")), "OK")
	step(fmt.Sprintf(`G "%s"`, k("t")), "new")
	step(fmt.Sprintf(`T "%s" "old" "newer"`, k("t")), "MISMATCH new")
	step(fmt.Sprintf(`G "%s"`, k("t")), "new")
	step(fmt.Sprintf(`T "%s" (nil) "first"`, k("tn")), "OK")
	step(fmt.Sprintf(`G "%s"`, k("tn")), "first")
	step(fmt.Sprintf(`T "%s" (nil) "again"`, k("tn")), "MISMATCH first")
	step(fmt.Sprintf(`T "%s" "x" "y"`, k("absent")), "MISMATCH (nil)")
	step(fmt.Sprintf(`G "%s"`, k("absent")), "(nil)")
	// Append on an absent, then an existing key.
	step(fmt.Sprintf(`A "%s" "foo"`, k("ap")), "OK")
	step(fmt.Sprintf(`A "%s" "bar"`, k("ap")), "OK")
	step(fmt.Sprintf(`G "%s"`, k("ap")), "foobar")
	// Blanks and escaped quotes in keys and values.
	step(fmt.Sprintf(`P "%s" "value \"quoted\" here"`, k("key with spaces")), "OK")
	step(fmt.Sprintf(`G "%s"`, k("key with spaces")), `value "quoted" here`)
	// NUL and other binary bytes, read back byte-exact.
	step(fmt.Sprintf(`P "%s" "a\0b\0"`, k("nul")), "OK")
	step(fmt.Sprintf(`G "%s"`, k("nul")), "a\x00b\x00")
	step(fmt.Sprintf(`P "%s" "\xff\x00\xfe\\\n"`, k(`bin\x00key`)), "OK")
	step(fmt.Sprintf(`G "%s"`, k(`bin\x00key`)), "\xff\x00\xfe\\\n")
	live = map[string]string{
		k("a"): "1", k("t"): "new", k("tn"): "first", k("ap"): "foobar",
		k("key with spaces"): `value "quoted" here`, k("nul"): "a\x00b\x00",
		k("bin\x00key"): "\xff\x00\xfe\\\n",
	}
	return in.String(), out.String(), live
}

// checkStatusOutput checks what `status` then `status --json` printed at the
// end of a session: the table lists every server of the JSON document with
// its id, address and pid. It returns the parsed JSON.
func checkStatusOutput(t *testing.T, out string) client.ClusterStatus {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("status output too short:\n%s", out)
	}
	var st client.ClusterStatus
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, lines[len(lines)-1])
	}
	checkStatusJSON(t, &st)
	table := lines[:len(lines)-1]
	if f := strings.Fields(table[0]); len(f) < 4 || f[0] != "ID" || f[1] != "ADDR" || f[3] != "PID" {
		t.Errorf("status table header = %q", table[0])
	}
	if want := fmt.Sprintf("epoch %d", st.Epoch); table[len(table)-1] != want {
		t.Errorf("status table ends with %q, want %q", table[len(table)-1], want)
	}
	rows := table[1 : len(table)-1]
	if len(rows) != len(st.Servers) {
		t.Fatalf("status table has %d rows, JSON %d servers:\n%s", len(rows), len(st.Servers), out)
	}
	for i, s := range st.Servers {
		f := strings.Fields(rows[i])
		if len(f) < 4 || f[0] != strconv.Itoa(s.ID) || f[1] != s.Addr || f[3] != strconv.Itoa(s.PID) {
			t.Errorf("status table row %d = %q, want id %d addr %s pid %d", i, rows[i], s.ID, s.Addr, s.PID)
		}
	}
	return st
}

// checkStatusJSON checks a healthy 3-server cluster's status document.
func checkStatusJSON(t *testing.T, st *client.ClusterStatus) {
	t.Helper()
	if st.Epoch < 1 {
		t.Errorf("status epoch %d, want >= 1", st.Epoch)
	}
	if len(st.Servers) != 3 {
		t.Fatalf("status lists %d servers, want 3: %+v", len(st.Servers), st.Servers)
	}
	for i, s := range st.Servers {
		if s.ID != i {
			t.Errorf("servers[%d].id = %d", i, s.ID)
		}
		if s.Addr == "" || s.PeerAddr == "" || s.CtlAddr == "" {
			t.Errorf("server %d: empty address: %+v", i, s)
		}
		if s.PID <= 0 {
			t.Errorf("server %d: pid %d", i, s.PID)
		}
		if s.State != "serving" {
			t.Errorf("server %d: state %q, want serving", i, s.State)
		}
	}
}

// keyCountsMatch reports whether st's key counts are those of the live keys:
// each server's primary_keys counts the keys of the shards it is primary
// of, secondary_keys those of the shards it holds a copy of.
func keyCountsMatch(st *client.ClusterStatus, live map[string]string) (bool, string) {
	n := len(st.Servers)
	ring := hashring.New(n)
	perShard := make([]uint64, n)
	for k := range live {
		perShard[ring.Shard(k)]++
	}
	var sumP, sumS uint64
	ok := true
	var got strings.Builder
	for _, s := range st.Servers {
		var wp, ws uint64
		for _, sh := range s.PrimaryOf {
			wp += perShard[sh]
		}
		for _, sh := range s.SecondaryOf {
			ws += perShard[sh]
		}
		sumP += s.PrimaryKeys
		sumS += s.SecondaryKeys
		if s.PrimaryKeys != wp || s.SecondaryKeys != ws {
			ok = false
		}
		fmt.Fprintf(&got, "server %d: primary %d (want %d) secondary %d (want %d); ", s.ID, s.PrimaryKeys, wp, s.SecondaryKeys, ws)
	}
	if sumP != uint64(len(live)) || sumS != uint64(len(live)) {
		ok = false
	}
	return ok, got.String()
}

// waitKeyCounts polls `status --json` (key counts arrive with heartbeats)
// until they match live.
func waitKeyCounts(t *testing.T, c *testcluster.Cluster, live map[string]string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := runCLI(t, c.Bin, c.Addr, "", "status", "--json")
		if r.code != 0 {
			t.Fatalf("status --json: exit %d, stderr %q", r.code, r.stderr)
		}
		var st client.ClusterStatus
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json: %v: %q", err, r.stdout)
		}
		ok, got := keyCountsMatch(&st, live)
		if ok {
			return
		}
		last = got
		if time.Now().After(deadline) {
			t.Fatalf("key counts never matched the %d live keys: %s", len(live), last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCLISession runs the CLI on stdin and with -f against a real cluster:
// every command of the contract, with exact output.
func TestCLISession(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})

	r := runCLI(t, c.Bin, c.Addr, "P \"k\" \"v\"\nG \"k\"\n")
	if r.stdout != "OK\nv\n" || r.stderr != "" || r.code != 0 {
		t.Fatalf("P then G on stdin: stdout %q stderr %q exit %d, want \"OK\\nv\\n\", nothing, 0", r.stdout, r.stderr, r.code)
	}
	live := map[string]string{"k": "v"}

	for _, mode := range []string{"stdin", "file"} {
		t.Run(mode, func(t *testing.T) {
			script, want, keys := cliScript(mode + "/")
			script += "status\nstatus --json\n"
			var r cliResult
			if mode == "stdin" {
				r = runCLI(t, c.Bin, c.Addr, script)
			} else {
				path := filepath.Join(t.TempDir(), "script.txt")
				if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
					t.Fatal(err)
				}
				r = runCLI(t, c.Bin, c.Addr, "", "-f", path)
			}
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing ((nil) and MISMATCH are answers)", r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stdout, want) {
				t.Fatalf("output differs from the expected answers\ngot:\n%q\nwant prefix:\n%q", r.stdout, want)
			}
			checkStatusOutput(t, r.stdout[len(want):])
			for k, v := range keys {
				live[k] = v
			}
			waitKeyCounts(t, c, live)
		})
	}

	// The CLI's writes are visible to the Go client byte for byte.
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for k, v := range live {
		got, err := cl.Get(ctx, k)
		if err != nil || string(got) != v {
			t.Errorf("Go client Get(%q) = %q, %v; want %q", k, got, err, v)
		}
	}
}

// TestCLIOneShot checks one-shot mode's output and exit statuses.
func TestCLIOneShot(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})

	// A port with nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	big := strings.Repeat("k", 64<<10+1)
	cases := []struct {
		name     string
		addr     string
		args     []string
		code     int
		stdout   string // exact, unless anyOut
		errLine  bool   // stderr must be exactly one line (else empty)
		anyOut   bool
		contains string // stderr must contain this
	}{
		{name: "put", addr: c.Addr, args: []string{"P", "k1", "v1"}, stdout: "OK\n"},
		{name: "get existing", addr: c.Addr, args: []string{"G", "k1"}, stdout: "v1\n"},
		{name: "get absent", addr: c.Addr, args: []string{"G", "nope"}, code: 1, stdout: "(nil)\n"},
		{name: "cas mismatch", addr: c.Addr, args: []string{"T", "k1", "other", "v2"}, code: 1, stdout: "MISMATCH v1\n"},
		{name: "cas ok", addr: c.Addr, args: []string{"T", "k1", "v1", "v2"}, stdout: "OK\n"},
		{name: "get after cas", addr: c.Addr, args: []string{"G", "k1"}, stdout: "v2\n"},
		{name: "cas nil on absent", addr: c.Addr, args: []string{"T", "k2", "(nil)", "x"}, stdout: "OK\n"},
		{name: "cas nil on present", addr: c.Addr, args: []string{"T", "k2", "(nil)", "y"}, code: 1, stdout: "MISMATCH x\n"},
		{name: "append", addr: c.Addr, args: []string{"A", "k2", "yz"}, stdout: "OK\n"},
		{name: "get appended", addr: c.Addr, args: []string{"G", "k2"}, stdout: "xyz\n"},
		{name: "delete", addr: c.Addr, args: []string{"D", "k2"}, stdout: "OK\n"},
		{name: "get deleted", addr: c.Addr, args: []string{"G", "k2"}, code: 1, stdout: "(nil)\n"},
		{name: "status json", addr: c.Addr, args: []string{"status", "--json"}, anyOut: true},
		{name: "unknown command", addr: c.Addr, args: []string{"X", "k"}, code: 2, errLine: true},
		{name: "too few args", addr: c.Addr, args: []string{"G"}, code: 2, errLine: true},
		{name: "too many args", addr: c.Addr, args: []string{"P", "k", "v", "w"}, code: 2, errLine: true},
		{name: "bad flag", addr: c.Addr, args: []string{"-zz", "G", "k"}, code: 2, errLine: true},
		{name: "bad port", args: []string{"-h", "127.0.0.1", "-p", "notaport", "G", "k"}, code: 2, errLine: true},
		{name: "missing port", args: []string{"-h", "127.0.0.1", "G", "k"}, code: 2, errLine: true},
		{name: "unreachable", addr: dead, args: []string{"-timeout", "2s", "G", "k"}, code: 3, errLine: true, contains: dead},
		{name: "key over 64 KiB", addr: c.Addr, args: []string{"P", big, "v"}, code: 2, errLine: true},
		{name: "key over 64 KiB, cluster down", addr: dead, args: []string{"G", big}, code: 2, errLine: true},
	}
	for _, tc := range cases {
		r := runCLI(t, c.Bin, tc.addr, "", tc.args...)
		what := fmt.Sprintf("%s (client %q)", tc.name, shortArgs(tc.args))
		if r.code != tc.code {
			t.Errorf("%s: exit %d, want %d (stdout %q, stderr %q)", what, r.code, tc.code, r.stdout, r.stderr)
		}
		if !tc.anyOut && r.stdout != tc.stdout {
			t.Errorf("%s: stdout %q, want %q", what, r.stdout, tc.stdout)
		}
		if tc.errLine {
			oneErrorLine(t, what, r.stderr)
		} else if r.stderr != "" {
			t.Errorf("%s: unexpected stderr %q", what, r.stderr)
		}
		if tc.contains != "" && !strings.Contains(r.stderr, tc.contains) {
			t.Errorf("%s: stderr %q does not mention %q", what, r.stderr, tc.contains)
		}
		if tc.name == "status json" && r.code == 0 {
			var st client.ClusterStatus
			if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
				t.Errorf("%s: %v: %q", what, err, r.stdout)
			} else {
				checkStatusJSON(t, &st)
			}
		}
	}
}
