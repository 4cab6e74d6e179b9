package gateway

import (
	"runtime"
	"strings"
	"testing"
)

// TestParseStateBounded: what the parser keeps of an unfinished array
// command does not grow with its arguments (only its input, which the
// input budget counts, does), and a command's argument count is bounded
// by the request limit. One unfinished DEL of 2,390,001 arguments in
// 16.7 MB took the gateway from 11 to 365 MB (its spans and argument
// slices, rebuilt at every read), 8 of them to 1.3 GB (an attack).
func TestParseStateBounded(t *testing.T) {
	limit := DefaultMaxRequest
	// The attack's command is refused at its header.
	if c, _, _, err := readCommand([]byte("*2390001\r\n$3\r\nDEL\r\n"), nil, limit); c || err == nil {
		t.Fatalf("*2390001: complete %v, error %v; want refused", c, err)
	}
	n := maxArgs(limit)
	if n < 100_000 || 24*n > 8<<20 {
		t.Fatalf("maxArgs(%d) = %d", limit, n)
	}
	// The most arguments allowed, the last one still to come, read on
	// from where each read left off as the gateway reads a long command.
	var b strings.Builder
	b.WriteString("*" + itoa(int64(n)) + "\r\n$3\r\nDEL\r\n")
	for range n - 1 {
		b.WriteString("$1\r\na\r\n")
	}
	p := []byte(b.String())
	b.Reset()
	cut := len(p) - len("$1\r\na\r\n")
	var st readState
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for at := 64 << 10; ; at += 64 << 10 {
		at = min(at, cut)
		if at >= st.need {
			c, _, _, err := readFrom(p[:at], &st, nil, limit)
			if c || err != nil {
				t.Fatalf("at %d of %d bytes: complete %v, %v", at, len(p), c, err)
			}
		}
		if at == cut {
			break
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if held := int64(after.HeapAlloc) - int64(before.HeapAlloc); held > 1<<20 {
		t.Errorf("an unfinished command of %d arguments (%d bytes) held %d bytes of parse state", n, cut, held)
	}
	c, args, rest, err := readFrom(p, &st, nil, limit)
	if !c || err != nil || len(args) != n || string(args[0]) != "DEL" || string(args[n-1]) != "a" || len(rest) != 0 {
		t.Fatalf("whole: complete %v, %d arguments, %d bytes left, %v", c, len(args), len(rest), err)
	}
	// One more argument is refused at once.
	if c, _, _, err := readCommand([]byte("*"+itoa(int64(n+1))+"\r\n"), nil, limit); c || err == nil {
		t.Fatalf("*%d: complete %v, error %v; want refused", n+1, c, err)
	}
}
