package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"ftkv/client"
)

// refused sends in on a new connection and checks that the answer is
// exactly want followed by the end of the stream, within a second: a
// declared length the gateway will never accept is refused at once, not
// after waiting for bytes.
func refused(t *testing.T, addr, in, want string) {
	t.Helper()
	b, err := io.ReadAll(sendNew(t, addr, in, time.Second))
	if err != nil || string(b) != want {
		t.Fatalf("sent %q\ngot  %q (%v)\nwant %q then end of stream", in, b, err, want)
	}
}

// TestInvalidLengths: bulk and multibulk lengths Redis refuses (Redis 7's
// words: unparsable, negative, over proto-max-bulk-len) or that are over
// the gateway's request limit are answered at once and the connection is
// closed; the commands before them are answered first.
func TestInvalidLengths(t *testing.T) {
	g := start(t, newMemStore(), nil)
	const bulk = "-ERR Protocol error: invalid bulk length\r\n"
	const multi = "-ERR Protocol error: invalid multibulk length\r\n"
	for _, tc := range []struct{ in, want string }{
		{"*1\r\n$999999999999\r\n", bulk},
		{"*99999999999\r\n", multi},
		{"*1\r\n$9223372036854775807\r\n", bulk},
		{"*1\r\n$99999999999999999999999\r\n", bulk},
		{"*1\r\n$-1\r\n", bulk},
		{"*1\r\n$-2\r\n", bulk},
		{"*1\r\n$-3\r\nx\r\n", bulk},
		{"*1\r\n$+4\r\nPING\r\n", bulk},
		{"*1\r\n$04\r\nPING\r\n", bulk},
		{"*1\r\n$ 4\r\nPING\r\n", bulk},
		{"*+1\r\n$4\r\nPING\r\n", multi},
		{"*9223372036854775807\r\n", multi},
		{"*2\r\n$4\r\nECHO\r\n$" + itoa(DefaultMaxRequest+1) + "\r\n", bulk},
		{"*" + itoa(DefaultMaxRequest+1) + "\r\n", multi},
		{cmd("PING") + "*1\r\n$999999999999\r\n", "+PONG\r\n" + bulk},
		{cmd("PING") + "*99999999999\r\n" + cmd("PING"), "+PONG\r\n" + multi},
	} {
		refused(t, g.Addr(), tc.in, tc.want)
	}
	exchange(t, g.Addr(), cmd("PING"), "+PONG\r\n") // still serving
	// An empty or negative count is skipped without an answer, as Redis
	// 7.0.15 does ("-0" is not a number to it).
	exchange(t, g.Addr(), "*-1\r\n"+cmd("PING")+"*-5\r\n*0\r\n"+cmd("PING"), "+PONG\r\n+PONG\r\n")
	refused(t, g.Addr(), "*-0\r\n", multi)
}

// TestOverLimitAtOnce: a command whose declared lengths cannot fit in the
// request limit is refused as soon as they are read.
func TestOverLimitAtOnce(t *testing.T) {
	g := start(t, newMemStore(), func(c *Config) { c.MaxRequest = 4096 })
	const over = "-ERR Protocol error: request over the gateway's limit of 4096 bytes\r\n"
	refused(t, g.Addr(), "*1\r\n$4097\r\n", "-ERR Protocol error: invalid bulk length\r\n")
	refused(t, g.Addr(), "*4097\r\n", "-ERR Protocol error: invalid multibulk length\r\n")
	refused(t, g.Addr(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4090\r\nvvv", over)
	refused(t, g.Addr(), "*1000\r\n", over)
	// Exactly the limit is accepted.
	v := strings.Repeat("v", 4096-len(cmd("SET", "k", ""))-3) // (3 more digits in its length)
	if n := len(cmd("SET", "k", v)); n != 4096 {
		t.Fatalf("command of %d bytes", n)
	}
	exchange(t, g.Addr(), cmd("SET", "k", v)+cmd("STRLEN", "k"), "+OK\r\n:"+itoa(int64(len(v)))+"\r\n")
	refused(t, g.Addr(), cmd("SET", "k", v+"v")[:40], over) // one byte more
	// At most one argument per 64 bytes of the limit (maxArgs).
	keys := append([]string{"EXISTS"}, slices.Repeat([]string{"x"}, 63)...)
	exchange(t, g.Addr(), cmd(keys...), ":0\r\n")
	refused(t, g.Addr(), "*65\r\n", "-ERR Protocol error: request over the gateway's limit of 64 arguments\r\n")
}

// FuzzReadCommand: readCommand never panics, reads a whole encoded
// command back as it was, and finds every proper prefix of it incomplete.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{cmd("SET", "k", "a\r\nb"), "*1\r\n$-2\r\n", "*1\r\n$9223372036854775807\r\n", "$5 x\r\n", "GET k\r\n", "*0\r\n"} {
		f.Add([]byte(s), "k", "v")
	}
	f.Fuzz(func(t *testing.T, p []byte, a, b string) {
		readCommand(p, nil, 1<<10)
		// Read on from where it left off (readState), p arriving a byte at
		// a time, a command reads as read whole: never complete before its
		// need, then the same answer.
		var st readState
		for cut := 0; cut <= len(p); cut++ {
			wc, wargs, wrest, werr := readCommand(p[:cut], nil, 1<<10)
			if cut < st.need {
				if wc {
					t.Fatalf("%q: complete at %d bytes, before its need of %d", p[:cut], cut, st.need)
				}
				continue
			}
			c, args, rest, err := readFrom(p[:cut], &st, nil, 1<<10)
			if c != wc || (err == nil) != (werr == nil) || len(rest) != len(wrest) || fmt.Sprintf("%q", args) != fmt.Sprintf("%q", wargs) {
				t.Fatalf("%q: read on: %v %q %q %v; read whole: %v %q %q %v", p[:cut], c, args, rest, err, wc, wargs, wrest, werr)
			}
			if c || err != nil {
				break
			}
		}
		in := []byte(cmd("SET", a, b))
		for cut := 0; cut < len(in); cut++ {
			if complete, _, _, err := readCommand(in[:cut], nil, 1<<20); complete || err != nil {
				t.Fatalf("%q: complete %v, %v", in[:cut], complete, err)
			}
		}
		complete, args, rest, err := readCommand(append(in, "PING"...), nil, 1<<20)
		if !complete || err != nil || len(args) != 3 || string(args[1]) != a || string(args[2]) != b || string(rest) != "PING" {
			t.Fatalf("%q: %v %q %q %v", in, complete, args, rest, err)
		}
	})
}

// TestInlineDollar: a line starting with '$' outside an array is an inline
// command to Redis (an unknown one), not a length to wait on.
func TestInlineDollar(t *testing.T) {
	g := start(t, newMemStore(), nil)
	exchange(t, g.Addr(), "$999999999999\r\n"+cmd("PING"),
		"-ERR unknown command '$999999999999', with args beginning with: \r\n+PONG\r\n")
	exchange(t, g.Addr(), "$5 hello\r\n", "-ERR unknown command '$5', with args beginning with: 'hello' \r\n")
}

// TestInlineQuotingAsRedis: an inline command's arguments are split as
// Redis's sdssplitargs splits them (each case checked against
// redis-server 7.0): inside single quotes only \' is an escape; inside
// double quotes \n \r \t \b \a and \xHH are, and any other \c is c; a
// closing quote must end the argument.
func TestInlineQuotingAsRedis(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string // nil: "unbalanced quotes"
	}{
		{`SET q 'a\\nb'`, []string{"SET", "q", `a\\nb`}},
		{`SET q 'a\nb'`, []string{"SET", "q", `a\nb`}},
		{`SET q 'a\tb'`, []string{"SET", "q", `a\tb`}},
		{`SET q 'it\'s'`, []string{"SET", "q", "it's"}},
		{`SET q "a\nb"`, []string{"SET", "q", "a\nb"}},
		{`SET q "x\x41"`, []string{"SET", "q", "xA"}},
		{`SET q "\x4"`, []string{"SET", "q", "x4"}},
		{`SET q "\a\b\r\t\"\q"`, []string{"SET", "q", "\a\b\r\t\"q"}},
		{`SET q ab"cd"`, []string{"SET", "q", "abcd"}},
		{`SET q ''`, []string{"SET", "q", ""}},
		{"  PING  \t ", []string{"PING"}},
		{`SET q 'open`, nil},
		{`SET q 'a'b`, nil},
		{`SET q "a"b`, nil},
		{`SET q "open`, nil},
	} {
		complete, args, rest, err := readCommand([]byte(c.in+"\r\nNEXT"), nil, 1<<20)
		if c.want == nil {
			if err == nil || protocolError(err) != "ERR Protocol error: unbalanced quotes in request" {
				t.Errorf("%s: %q %v, want the unbalanced quotes error", c.in, args, err)
			}
			continue
		}
		got := make([]string, len(args))
		for i, a := range args {
			got[i] = string(a)
		}
		if !complete || err != nil || string(rest) != "NEXT" || !slices.Equal(got, c.want) {
			t.Errorf("%s: %v %q rest %q %v, want %q", c.in, complete, got, rest, err, c.want)
		}
	}
}

// TestPipelinedLargeSetsHeldByBytes: a client pipelining SETs of 1 MiB
// while the cluster does not answer makes the gateway hold at most
// maxQueued of them as commands; the rest waits in its input buffer,
// counted in the input budget (here 8 MiB). It read up to max_inflight
// (4,096) of them into its queue: 150 MiB here.
func TestPipelinedLargeSetsHeldByBytes(t *testing.T) {
	st := newMemStore()
	st.gate = make(chan struct{})
	const budget = 8 << 20
	g := start(t, st, func(c *Config) { c.Limits.InputBudget = budget; c.Timeout = 10 * time.Second })
	base := liveHeap()
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	val := strings.Repeat("v", 1<<20)
	const sets = 150
	go func() {
		w := bufio.NewWriterSize(nc, 1<<20)
		for i := range sets {
			fmt.Fprintf(w, "*3\r\n$3\r\nSET\r\n$%d\r\nk%03d\r\n$%d\r\n%s\r\n", len(fmt.Sprintf("k%03d", i)), i, len(val), val)
		}
		_ = w.Flush()
	}()
	var peak uint64
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
		peak = max(peak, liveHeap())
		time.Sleep(50 * time.Millisecond)
	}
	close(st.gate)
	grew := int64(peak) - int64(base)
	t.Logf("live heap grew by %d MiB while %d SETs of 1 MiB were pipelined to a cluster that did not answer", grew>>20, sets)
	if limit := int64(8<<20 + 8*budget); grew > limit {
		t.Fatalf("live heap grew by %d MiB, want at most %d MiB (8 MiB of commands; the input budget in gnet's buffer, rounded up to a power of two and grown by copies, old and new alive at once)", grew>>20, limit>>20)
	}
	// The gateway serves others meanwhile and after.
	if got := readAnswer(t, dialRESP(t, g.Addr()), cmd("SET", "other", "x")); got != "+OK\r\n" {
		t.Fatalf("another client's SET: %q", got)
	}
}

// slowStore is a memStore whose batches take d.
type slowStore struct {
	*memStore
	d time.Duration
}

func (s slowStore) Batch(ctx context.Context, ops []client.BatchOp) error {
	time.Sleep(s.d)
	return s.memStore.Batch(ctx, ops)
}

// TestPipelineOverMaxQueuedAnswered: pipelines of SETs of 300 KiB, 18 MiB
// each (over maxQueued), get every answer, round after round.
func TestPipelineOverMaxQueuedAnswered(t *testing.T) {
	g := start(t, slowStore{newMemStore(), 2 * time.Millisecond}, func(c *Config) { c.Timeout = 10 * time.Second })
	val := strings.Repeat("v", 300<<10)
	const sets = 60
	want := strings.Repeat("+OK\r\n", sets)
	for round := range 10 {
		nc, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			w := bufio.NewWriterSize(nc, 1<<20)
			for i := range sets {
				fmt.Fprintf(w, "*3\r\n$3\r\nSET\r\n$4\r\nk%03d\r\n$%d\r\n%s\r\n", i, len(val), val)
			}
			_ = w.Flush()
		}()
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, len(want))
		if n, err := io.ReadFull(nc, buf); err != nil || string(buf) != want {
			t.Fatalf("round %d: %d of %d bytes of answers: %v", round, n, len(want), err)
		}
		nc.Close()
	}
}

// TestStalledReadingWokenWhenDrainedMeanwhile: reading stops at maxQueued
// with input left, and the session's commands all run before the loop
// records the stall (a test hook widens that window): the connection is
// woken and the rest is read. It waited for more input that never came
// (a review: 9 of 10 answers, then nothing).
func TestStalledReadingWokenWhenDrainedMeanwhile(t *testing.T) {
	afterParse = func(full bool) {
		if full {
			time.Sleep(150 * time.Millisecond)
		}
	}
	t.Cleanup(func() { afterParse = nil }) // (after the gateway's Close, registered later)
	g := start(t, slowStore{newMemStore(), 100 * time.Millisecond}, func(c *Config) { c.Timeout = 10 * time.Second })
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	set := func(w io.Writer, k string, n int) {
		fmt.Fprintf(w, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, n, strings.Repeat("v", n))
	}
	var b strings.Builder
	for i := range 8 {
		set(&b, fmt.Sprintf("a%02d", i), 1_047_000) // just under 8 MiB together
	}
	_, _ = io.WriteString(nc, b.String())
	time.Sleep(30 * time.Millisecond) // (read; their batch out for 100 ms)
	b.Reset()
	set(&b, "b00", 20<<10)
	set(&b, "b01", 20<<10)
	_, _ = io.WriteString(nc, b.String())
	want := strings.Repeat("+OK\r\n", 10)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(want))
	if n, err := io.ReadFull(nc, buf); err != nil {
		t.Fatalf("%d of %d answers: %v", n/5, 10, err)
	}
}

// TestStalledReadingNotCutAsSlowSender: a client pipelines 12 MiB of SETs;
// reading stops at maxQueued while the cluster holds every batch (1 s
// here), longer than frame_timeout (300 ms here). The half-read input is
// the gateway's own stall, not a slow sender: the connection must stay
// and get every answer once the cluster answers. It was closed as an
// incomplete frame held too long.
func TestStalledReadingNotCutAsSlowSender(t *testing.T) {
	st := newMemStore()
	st.gate = make(chan struct{})
	g := start(t, st, func(c *Config) {
		c.Timeout = 10 * time.Second
		c.Limits.FrameTimeout = 300 * time.Millisecond
	})
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	val := strings.Repeat("v", 300<<10)
	const sets = 40
	go func() {
		w := bufio.NewWriterSize(nc, 1<<20)
		for i := range sets {
			fmt.Fprintf(w, "*3\r\n$3\r\nSET\r\n$4\r\nk%03d\r\n$%d\r\n%s\r\n", i, len(val), val)
		}
		_ = w.Flush()
	}()
	time.Sleep(time.Second)
	close(st.gate)
	want := strings.Repeat("+OK\r\n", sets)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(want))
	if n, err := io.ReadFull(nc, buf); err != nil || string(buf) != want {
		t.Fatalf("%d of %d bytes of answers after the cluster held the batches for 1 s: %v", n, len(want), err)
	}
}
