package connlimit

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// heldConn is the part of a gnet.Conn that inboundOver reads: the unread
// input (its first bytes given) and the queued output.
type heldConn struct {
	gnet.Conn
	head []byte
	in   int
	out  int
}

func (c *heldConn) InboundBuffered() int  { return c.in }
func (c *heldConn) OutboundBuffered() int { return c.out }
func (c *heldConn) Fd() int               { return -1 } // (no kernel send queue to sample)
func (c *heldConn) Peek(n int) ([]byte, error) {
	return c.head[:min(n, len(c.head))], nil
}

// The unread input a paused connection may hold: InboundCap when it does
// not read, half the InputBudget when it reads, in both cases beyond its
// first frame, counted at most as long as the longest frame the port
// takes. (A length prefix of 0xFFFFFFFF, or the gateway's RESP "*3\r\n"
// read as a length of 707,988,746, raised the limit by as much: a client
// that never read held the whole input budget on one connection.)
func TestInboundOver(t *testing.T) {
	frame := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	huge := []byte{0xff, 0xff, 0xff, 0xff}
	resp := []byte("*3\r\n")
	long := time.Now().Add(-time.Second).UnixNano()
	cases := []struct {
		name    string
		head    []byte
		in      int
		reading bool
		want    error
	}{
		{"small first frame, under the cap", frame(100), 1 << 20, false, nil},
		{"small first frame, over the cap", frame(100), 2 << 20, false, errInboundCap},
		{"a 2 MiB first frame is allowed for", frame(2 << 20), 3 << 20, false, nil},
		{"a bogus length is allowed for at most the longest frame", huge, 8 << 20, false, errInboundCap},
		{"RESP is no length", resp, 8 << 20, false, errInboundCap},
		{"reading, under half the budget", frame(100), 30 << 20, true, nil},
		{"reading, over half the budget", frame(100), 34 << 20, true, errReadingCap},
		{"reading, bogus length, over half the budget", huge, 40 << 20, true, errReadingCap},
	}
	for _, tc := range cases {
		c := &heldConn{head: tc.head, in: tc.in, out: 1 << 20}
		st := &State{c: c, p: &Port{cfg: Config{InboundCap: 1 << 20, InputBudget: NewInputBudget(64 << 20)}}, pausedAt: long}
		if tc.reading {
			st.drainedAt = time.Now().UnixNano()
		}
		if got := st.inboundOver(); !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// No queued output: paused for the server's sake, never closed for this.
	st := &State{c: &heldConn{head: huge, in: 60 << 20}, p: &Port{cfg: Config{InboundCap: 1 << 20}}, pausedAt: long}
	if got := st.inboundOver(); got != nil {
		t.Errorf("no queued output: %v, want nil", got)
	}
}
