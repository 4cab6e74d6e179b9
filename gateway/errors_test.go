package gateway

import (
	"context"
	"fmt"
	"testing"
)

// TestTimeoutWording: a command the cluster did not answer in time is
// TRYAGAIN; only a write's answer warns that it may have been applied,
// whichever path ran it (GET and SET alone are batched).
func TestTimeoutWording(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	st.setFail(fmt.Errorf("%w (last error: connection refused)", context.DeadlineExceeded))
	const read = "-TRYAGAIN ftkv did not answer in time: context deadline exceeded (last error: connection refused)\r\n"
	const write = "-TRYAGAIN ftkv did not answer in time (a write may have been applied): context deadline exceeded (last error: connection refused)\r\n"
	for _, tc := range []struct {
		in, want string
	}{
		{cmd("GET", "k"), read},
		{cmd("GET", "k") + cmd("GET", "j"), read + read},
		{cmd("MGET", "k", "j"), read},
		{cmd("EXISTS", "k"), read},
		{cmd("STRLEN", "k"), read},
		{cmd("DBSIZE"), read},
		{cmd("SET", "k", "v"), write},
		{cmd("SET", "k", "v") + cmd("SET", "j", "v"), write + write},
		{cmd("SET", "k", "v", "NX"), write},
		{cmd("INCR", "k"), write},
		{cmd("APPEND", "k", "v"), write},
		{cmd("DEL", "k"), write},
		{cmd("MSET", "k", "v"), write},
	} {
		exchange(t, g.Addr(), tc.in, tc.want)
	}
}

// TestReplyErrorTimeout: the mapping itself, for a read and a write; an
// error whose command is not known keeps the write's warning.
func TestReplyErrorTimeout(t *testing.T) {
	err := fmt.Errorf("%w (last error: x)", context.DeadlineExceeded)
	for _, tc := range []struct {
		got  Error
		want Error
	}{
		{replyError(err, false), "TRYAGAIN ftkv did not answer in time: context deadline exceeded (last error: x)"},
		{replyError(err, true), "TRYAGAIN ftkv did not answer in time (a write may have been applied): context deadline exceeded (last error: x)"},
		{respError(err), "TRYAGAIN ftkv did not answer in time (a write may have been applied): context deadline exceeded (last error: x)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, sp := range specs {
		want := map[string]bool{"set": true, "setnx": true, "getset": true, "getdel": true, "del": true, "unlink": true, "mset": true, "append": true,
			"incr": true, "decr": true, "incrby": true, "decrby": true}[sp.name]
		if sp.writes() != want {
			t.Errorf("%s: writes() = %v", sp.name, sp.writes())
		}
	}
}
