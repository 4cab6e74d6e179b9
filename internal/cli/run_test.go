package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ftkv/client"
	"ftkv/status"
)

// fakeStore is an in-memory Store with the client's semantics.
type fakeStore struct {
	mu     sync.Mutex
	data   map[string][]byte
	status *status.Cluster
	err    error // returned by every operation when set
	hang   bool  // every operation waits for its context, as a dead shard would
	closed bool
	// shutdowns counts ShutdownCluster calls.
	shutdowns int
}

func newFake() *fakeStore { return &fakeStore{data: map[string][]byte{}, status: fakeStatus()} }

func (f *fakeStore) fail(ctx context.Context) error {
	if f.hang {
		<-ctx.Done()
		return fmt.Errorf("%w (last error: %v)", ctx.Err(), client.ErrUnavailable)
	}
	return f.err
}

func (f *fakeStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := f.fail(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.data[key]
	if !ok {
		return nil, client.ErrNotFound
	}
	return v, nil
}

func (f *fakeStore) Put(ctx context.Context, key string, value []byte) error {
	if err := f.fail(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data[key] = append([]byte{}, value...)
	return nil
}

func (f *fakeStore) Delete(ctx context.Context, key string) error {
	if err := f.fail(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.data, key)
	return nil
}

func (f *fakeStore) Append(ctx context.Context, key string, value []byte) error {
	if err := f.fail(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data[key] = append(append([]byte{}, f.data[key]...), value...)
	return nil
}

func (f *fakeStore) CompareAndSwapCurrent(ctx context.Context, key string, old, new []byte) (bool, []byte, error) {
	if err := f.fail(ctx); err != nil {
		return false, nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.data[key]
	if (old == nil && !ok) || (old != nil && ok && bytes.Equal(cur, old)) {
		f.data[key] = append([]byte{}, new...)
		return true, nil, nil
	}
	if !ok {
		return false, nil, nil
	}
	return false, append([]byte{}, cur...), nil
}

func (f *fakeStore) Status(ctx context.Context) (*status.Cluster, error) {
	if err := f.fail(ctx); err != nil {
		return nil, err
	}
	return f.status, nil
}

func (f *fakeStore) ShutdownCluster(ctx context.Context) error {
	if err := f.fail(ctx); err != nil {
		return err
	}
	f.shutdowns++
	return nil
}

func (f *fakeStore) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

// harness runs the CLI against one fake store and records the dials.
type harness struct {
	store   *fakeStore
	dialErr error
	dials   []string
}

func (h *harness) dial(ctx context.Context, addr string) (Store, error) {
	h.dials = append(h.dials, addr)
	if h.dialErr != nil {
		return nil, h.dialErr
	}
	return h.store, nil
}

func (h *harness) run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb, h.dial)
	if n := strings.Count(errb.String(), "\n"); errb.Len() > 0 && (n == 0 || !strings.HasPrefix(errb.String(), "error: ")) {
		t.Errorf("stderr is not `error: ...` lines: %q", errb.String())
	}
	if h.store != nil && len(h.dials) > 0 && h.dialErr == nil && !h.store.closed {
		t.Errorf("store not closed")
	}
	return code, out.String(), errb.String()
}

var conn = []string{"-h", "coord.example", "-p", "7000"}

func args(words ...string) []string { return append(append([]string{}, conn...), words...) }

func TestOneShot(t *testing.T) {
	h := &harness{store: newFake()}
	h.store.data["k"] = []byte("v\x00with nul")
	h.store.data["counter"] = []byte("1")
	tests := []struct {
		words   []string
		code    int
		stdout  string
		errPart string
	}{
		{[]string{"G", "k"}, 0, "v\x00with nul\n", ""},
		{[]string{"g", "missing"}, 1, "(nil)\n", ""},
		{[]string{"P", "a b", `"quoted\n"`}, 0, "OK\n", ""},
		// One-shot words are not unescaped: the shell already did its job.
		{[]string{"G", "a b"}, 0, `"quoted\n"` + "\n", ""},
		{[]string{"A", "a b", "+"}, 0, "OK\n", ""},
		{[]string{"G", "a b"}, 0, `"quoted\n"+` + "\n", ""},
		{[]string{"D", "a b"}, 0, "OK\n", ""},
		{[]string{"G", "a b"}, 1, "(nil)\n", ""},
		{[]string{"T", "counter", "1", "2"}, 0, "OK\n", ""},
		{[]string{"T", "counter", "1", "3"}, 1, "MISMATCH 2\n", ""},
		{[]string{"T", "new", "(nil)", "x"}, 0, "OK\n", ""},
		{[]string{"T", "new", "(nil)", "y"}, 1, "MISMATCH x\n", ""},
		{[]string{"T", "absent", "x", "y"}, 1, "MISMATCH (nil)\n", ""},
		{[]string{"status", "--json"}, 0, "", ""},
		{[]string{"STATUS"}, 0, "", ""},
		// The whole command in one argument (quoted for the shell as a
		// line) is read as a line of input: unquoted and unescaped.
		{[]string{`P "q k" "v \"w\""`}, 0, "OK\n", ""},
		{[]string{`G "q k"`}, 0, `v "w"` + "\n", ""},
		{[]string{"G q"}, 1, "(nil)\n", ""},
	}
	for _, tt := range tests {
		code, stdout, stderr := h.run(t, "", args(tt.words...)...)
		if code != tt.code || (tt.stdout != "" && stdout != tt.stdout) || stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q", tt.words, code, stdout, stderr, tt.code, tt.stdout)
		}
	}
	if h.dials[0] != "coord.example:7000" {
		t.Errorf("dialed %q", h.dials[0])
	}
	if _, stdout, _ := h.run(t, "", args("status")...); !strings.HasPrefix(stdout, "ID  ADDR") || !strings.HasSuffix(stdout, "epoch 7\n") {
		t.Errorf("status table: %q", stdout)
	}
	if _, stdout, _ := h.run(t, "", args("status", "--json")...); !strings.HasPrefix(stdout, `{"epoch":7,"servers":[{"id":1,`) {
		t.Errorf("status --json: %q", stdout)
	}
}

func TestExitCodes(t *testing.T) {
	big := strings.Repeat("x", 1<<20+1)
	tests := []struct {
		name    string
		args    []string
		dialErr error
		opErr   error
		hang    bool
		code    int
		errPart string
		dials   bool
	}{
		{name: "unknown command", args: args("X", "k"), code: 2, errPart: `error: unknown command "X"`},
		{name: "one-argument line, bad quoting", args: args(`G "k`), code: 2, errPart: "error: column 3: "},
		{name: "one-argument line, unknown command", args: args(`X "k"`), code: 2, errPart: `error: unknown command "X"`},
		{name: "wrong arg count", args: args("G"), code: 2, errPart: "error: G takes 1 argument (G key), got 0"},
		{name: "too large", args: args("P", "k", big), code: 2, errPart: "too large: value of 1048577 bytes, limit 1048576"},
		{name: "unknown flag", args: []string{"-x"}, code: 2, errPart: "error: flag provided but not defined: -x (see -help)"},
		{name: "flag without value", args: []string{"-p"}, code: 2, errPart: "flag needs an argument: -p"},
		{name: "missing port", args: []string{"-h", "x", "G", "k"}, code: 2, errPart: "missing -p"},
		{name: "flags after the command", args: []string{"G", "k", "-h", "x", "-p", "7000"}, code: 2, errPart: "flags go before the command: -h came after G"},
		{name: "bad port", args: []string{"-p", "http", "G", "k"}, code: 2, errPart: `-p: bad port "http"`},
		{name: "bad timeout", args: append([]string{"-timeout", "0s"}, args("G", "k")...), code: 2, errPart: "-timeout: must be positive"},
		{name: "-f with command", args: append([]string{"-f", "x"}, args("G", "k")...), code: 2, errPart: "mutually exclusive"},
		{name: "help cmd", args: args("help"), code: 0, errPart: ""},
		{name: "dial refused", args: args("G", "k"), dialErr: errors.New("ftkv: coordinator coord.example:7000: dial tcp: connection refused"), code: 3,
			errPart: "error: cannot reach coordinator at coord.example:7000: dial tcp: connection refused\n", dials: true},
		{name: "dial deadline", args: args("G", "k"), dialErr: context.DeadlineExceeded, code: 3,
			errPart: "cannot reach coordinator at coord.example:7000: no answer in time: context deadline exceeded", dials: true}, // a deadline of the client's own, not -timeout
		{name: "unavailable", args: args("P", "k", "v"), opErr: fmt.Errorf("%w: shard 1", client.ErrUnavailable), code: 3, errPart: "error: ftkv: shard unavailable: shard 1", dials: true},
		{name: "server error", args: args("G", "k"), opErr: errors.New("ftkv: server x: error:\nboom"), code: 3, errPart: "error: ftkv: server x: error: boom\n", dials: true},
		{name: "server says too large", args: args("P", "k", "v"), opErr: fmt.Errorf("%w: limit", client.ErrTooLarge), code: 2, errPart: "too large", dials: true},
		{name: "timeout", args: append([]string{"-timeout", "20ms"}, args("G", "k")...), hang: true, code: 3, errPart: "error: no answer within 20ms: context deadline exceeded", dials: true},
		{name: "list with a bad port", args: []string{"-h", "a:7000,b:http", "G", "k"}, code: 2, errPart: `-h: bad port "http" in "b:http"`},
		// The empty port is -h's, not -p's (it was reported as -p's).
		{name: "host with an empty port", args: []string{"-h", "localhost:", "G", "k"}, code: 2, errPart: `-h: bad port "" in "localhost:"`},
		{name: "list with an empty entry", args: []string{"-h", "a:7000,,b:7010", "G", "k"}, code: 2, errPart: `-h: empty coordinator host`},
		{name: "list entry without a port", args: []string{"-h", "a:7000,b", "G", "k"}, code: 2, errPart: "missing -p"},
		{name: "group unreachable", args: []string{"-h", "a:7000,b:7010", "G", "k"},
			dialErr: errors.New("ftkv: no coordinator of a:7000,b:7010 answered: ftkv: coordinator a:7000: refused; ftkv: coordinator b:7010: refused"), code: 3,
			errPart: "error: cannot reach any coordinator of a:7000,b:7010: ftkv: coordinator a:7000: refused; ftkv: coordinator b:7010: refused\n", dials: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &harness{store: newFake(), dialErr: tt.dialErr}
			h.store.err, h.store.hang = tt.opErr, tt.hang
			code, stdout, stderr := h.run(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.errPart) || (tt.errPart == "") != (stderr == "") {
				t.Errorf("stderr %q, want it to contain %q", stderr, tt.errPart)
			}
			if strings.Count(stderr, "\n") > 1 {
				t.Errorf("stderr has more than one line: %q", stderr)
			}
			if tt.code >= 2 && stdout != "" {
				t.Errorf("stdout %q on failure", stdout)
			}
			if (len(h.dials) > 0) != tt.dials {
				t.Errorf("dialed %d times, want dial = %v", len(h.dials), tt.dials)
			}
		})
	}
}

// -h takes a comma-separated list of coordinators (then -p is not
// needed; list entries without a port take -p's).
func TestCoordinatorList(t *testing.T) {
	tests := []struct {
		args []string
		dial string
	}{
		{[]string{"-h", "h1:7000,h2:7010,h3:7020"}, "h1:7000,h2:7010,h3:7020"},
		{[]string{"-h", " h1:7000 , h2:7010"}, "h1:7000,h2:7010"},
		{[]string{"-h", "h1:7000"}, "h1:7000"},
		{[]string{"-h", "h1,h2:7010", "-p", "7000"}, "h1:7000,h2:7010"},
		{[]string{"-h", "[::1]:7000,::1", "-p", "7001"}, "[::1]:7000,[::1]:7001"},
		{[]string{"-h", "localhost", "-p", "7000"}, "localhost:7000"},
	}
	for _, tt := range tests {
		h := &harness{store: newFake()}
		code, _, stderr := h.run(t, "", append(tt.args, "G", "k")...)
		if code != 1 || stderr != "" || len(h.dials) != 1 || h.dials[0] != tt.dial {
			t.Errorf("%q: exit %d, stderr %q, dialed %q; want %q", tt.args, code, stderr, h.dials, tt.dial)
		}
	}
}

func TestHelpFlag(t *testing.T) {
	for _, a := range []string{"-help", "--help"} {
		h := &harness{}
		code, stdout, stderr := h.run(t, "", a)
		if code != 0 || !strings.HasPrefix(stdout, "usage: client -h <coord_host> -p <coord_port>") || stderr != "" {
			t.Errorf("%s: exit %d, stdout %.40q, stderr %q", a, code, stdout, stderr)
		}
	}
}

func TestBatch(t *testing.T) {
	h := &harness{store: newFake()}
	script := `# a comment
P "a key" "two words"

   # indented comment
G "a key"
P bin "\x00\xff\n"
G bin
A bin "\t"
g bin
G nope
T "a key" "two words" "three words here"
T "a key" (nil) x
T "x" "(nil)" y
T "x" (nil) "(nil)"
G x
X bad
P k
D "a key"
G "a key"
P "unterminated
status --json
P crlf "line"` + "\r\n" + `G crlf`
	code, stdout, stderr := h.run(t, script, conn...)
	want := "OK\n" +
		"two words\n" +
		"OK\n" +
		"\x00\xff\n\n" +
		"OK\n" +
		"\x00\xff\n\t\n" +
		"(nil)\n" +
		"OK\n" +
		"MISMATCH three words here\n" +
		"MISMATCH (nil)\n" +
		"OK\n" +
		"(nil)\n" +
		"OK\n" +
		"(nil)\n" +
		`{"epoch":7,`
	if !strings.HasPrefix(stdout, want) {
		t.Errorf("stdout:\n%q\nwant prefix:\n%q", stdout, want)
	}
	if !strings.HasSuffix(stdout, "OK\nline\n") {
		t.Errorf("stdout does not end with the CRLF line's answers: %q", stdout)
	}
	wantErr := `error: stdin:16: unknown command "X" (commands: P G D T A status shutdown help quit)
error: stdin:17: P takes 2 arguments (P key value), got 1
error: stdin:20: column 3: unterminated quote
`
	if stderr != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, wantErr)
	}
	if code != ExitUsage {
		t.Errorf("exit %d, want %d (the last error's)", code, ExitUsage)
	}
	if len(h.dials) != 1 {
		t.Errorf("dialed %d times, want once", len(h.dials))
	}
}

func TestBatchExitStatus(t *testing.T) {
	tests := []struct {
		name   string
		script string
		opErr  error
		code   int
		stdout string
	}{
		{"all good", "P k v\nG k\n", nil, 0, "OK\nv\n"},
		{"nil and mismatch are answers", "G k\nT k a b\n", nil, 0, "(nil)\nMISMATCH (nil)\n"},
		{"empty input", "", nil, 0, ""},
		{"quit stops", "P k v\nquit\nG k\n", nil, 0, "OK\n"},
		{"exit stops", "EXIT\nG k\n", nil, 0, ""},
		{"usage then fine", "X\nP k v\n", nil, 2, "OK\n"},
		{"cluster error", "G k\n", client.ErrUnavailable, 3, ""},
		{"last error wins", "G k\nX\n", client.ErrUnavailable, 2, ""},
		{"help", "help\n", nil, 0, CommandHelp},
		{"no final newline", "P k v", nil, 0, "OK\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &harness{store: newFake()}
			h.store.err = tt.opErr
			code, stdout, stderr := h.run(t, tt.script, conn...)
			if code != tt.code || stdout != tt.stdout {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q", code, stdout, stderr, tt.code, tt.stdout)
			}
		})
	}
}

func TestBatchTimeoutPerCommand(t *testing.T) {
	h := &harness{store: newFake()}
	h.store.hang = true
	code, _, stderr := h.run(t, "G a\nG b\n", append([]string{"-timeout", "10ms"}, conn...)...)
	if code != ExitUnavailable || strings.Count(stderr, "no answer within 10ms") != 2 {
		t.Errorf("exit %d, stderr %q; want 3 and two timeouts", code, stderr)
	}
}

func TestFileInput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cmds.txt")
	if err := os.WriteFile(path, []byte("P k \"v 1\"\nG k\nbogus\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &harness{store: newFake()}
	code, stdout, stderr := h.run(t, "G ignored-stdin\n", append([]string{"-f", path}, conn...)...)
	if code != 2 || stdout != "OK\nv 1\n" || stderr != "error: "+path+`:3: unknown command "bogus" (commands: P G D T A status shutdown help quit)`+"\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	h = &harness{store: newFake()}
	code, _, stderr = h.run(t, "", append([]string{"-f", filepath.Join(dir, "absent")}, conn...)...)
	if code != 2 || !strings.Contains(stderr, "no such file") || len(h.dials) != 0 {
		t.Errorf("missing file: exit %d, stderr %q, %d dials", code, stderr, len(h.dials))
	}

	h = &harness{store: newFake()}
	code, stdout, _ = h.run(t, "P k v\n", append([]string{"-f", "-"}, conn...)...)
	if code != 0 || stdout != "OK\n" {
		t.Errorf("-f -: exit %d, stdout %q", code, stdout)
	}
}

func TestSessionDialFailure(t *testing.T) {
	h := &harness{dialErr: errors.New("connection refused")}
	code, stdout, stderr := h.run(t, "G k\n", conn...)
	if code != 3 || stdout != "" || stderr != "error: cannot reach coordinator at coord.example:7000: connection refused\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{usagef("x"), 2},
		{&SyntaxError{Col: 1, Msg: "x"}, 2},
		{fmt.Errorf("wrapped: %w", client.ErrTooLarge), 2},
		{client.ErrUnavailable, 3},
		{context.DeadlineExceeded, 3},
		{fmt.Errorf("%w (last error: x)", context.DeadlineExceeded), 3},
		{errors.New("ftkv: server x: error"), 3},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
