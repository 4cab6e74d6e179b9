package frameio

import (
	"errors"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"ftkv/wire"
)

// failConn is the part of a gnet.Conn that Decode uses: buffered input,
// and a Write that fails the way gnet's does when the socket refuses
// (gnet has closed the connection and freed its descriptor by then).
type failConn struct {
	gnet.Conn
	in     []byte
	writes int // Write calls
	failAt int // the Write call (1-based) that fails
	failed bool
	after  int // Write calls after the failed one
}

func (c *failConn) InboundBuffered() int { return len(c.in) }

func (c *failConn) Peek(n int) ([]byte, error) {
	if n > len(c.in) {
		n = len(c.in)
	}
	return c.in[:n], nil
}

func (c *failConn) Discard(n int) (int, error) {
	c.in = c.in[n:]
	return n, nil
}

func (c *failConn) Write(b []byte) (int, error) {
	c.writes++
	if c.failed {
		c.after++
	}
	if c.writes == c.failAt {
		c.failed = true
		return 0, errors.New("write: broken pipe")
	}
	return len(b), nil
}

// A failed write while answers are flushed mid-decode ends the decoding:
// the connection is closed, and its descriptor number may already belong
// to another socket or file, so nothing more is written to it (before the
// fix, the rest of the frames were answered into that descriptor).
func TestDecodeStopsAfterFailedWrite(t *testing.T) {
	var in []byte
	for i := range 4 {
		in = wire.Append(in, &wire.Frame{Op: wire.OpGet, ID: uint64(i), Key: []byte("k")})
	}
	big := make([]byte, flushOut) // each answer alone is flushed at once
	answered := 0
	handle := func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		answered++
		return wire.Append(out, &wire.Frame{Op: f.Op, ID: f.ID, Status: wire.StatusOK, Value: big}), gnet.None
	}

	c := &failConn{in: in, failAt: 1}
	if act := DecodeAll(c, 0, handle); act != gnet.Close {
		t.Errorf("action after a failed write %v, want Close", act)
	}
	if c.after != 0 {
		t.Errorf("%d writes after the failed one (%d frames answered)", c.after, answered)
	}

	// The same frames on a connection that takes every write: all answered.
	ok := &failConn{in: in}
	answered = 0
	if act := DecodeAll(ok, 0, handle); act != gnet.None || answered != 4 || ok.writes != 4 {
		t.Errorf("healthy connection: action %v, %d answered, %d writes; want None, 4, 4", act, answered, ok.writes)
	}
}

// Ahead sees each window of buffered bytes before any of its frames is
// handed to the handler, and the frames are decoded as without it.
func TestDecodeAheadSeesWindowFirst(t *testing.T) {
	var in []byte
	for i := range 5 {
		in = wire.Append(in, &wire.Frame{Op: wire.OpPut, ID: uint64(i), Key: []byte("k"), Value: []byte("v")})
	}
	in = append(in, 0, 0) // the start of a frame not complete yet
	var events []string
	d := Decoder{Ahead: func(buf []byte) {
		events = append(events, "ahead")
		if len(buf) != len(in) {
			t.Errorf("ahead saw %d bytes, %d buffered", len(buf), len(in))
		}
	}}
	c := &failConn{in: in}
	act := d.Decode(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		events = append(events, "frame")
		return out, gnet.None
	})
	if act != gnet.None {
		t.Fatalf("action %v", act)
	}
	want := []string{"ahead", "frame", "frame", "frame", "frame", "frame"}
	if len(events) != len(want) || events[0] != "ahead" || events[len(events)-1] != "frame" {
		t.Fatalf("events %v, want %v", events, want)
	}
	if len(c.in) != 2 {
		t.Fatalf("%d bytes left buffered, want the 2 of the incomplete frame", len(c.in))
	}
}
