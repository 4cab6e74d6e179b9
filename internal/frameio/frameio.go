// Package frameio moves wire frames over connections: decoding every
// complete frame a gnet connection has buffered, and reading one frame from
// a buffered stream. (wire itself stays pure: no I/O.)
package frameio

import (
	"bufio"
	"fmt"
	"io"
	"sync"

	"github.com/panjf2000/gnet/v2"

	"ftkv/wire"
)

// Handler answers one decoded frame by appending to out; returning an
// action other than gnet.None stops decoding. NotNow stops it too, and
// leaves the frame unread, to be decoded again later.
type Handler func(f *wire.Frame, out []byte) ([]byte, gnet.Action)

// NotNow is the Handler's answer for a frame it cannot answer yet: the
// frame stays in the connection's input (the handler pauses the
// connection, or the frame would be decoded again at once).
const NotNow gnet.Action = -1

var outPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// DecodeAll decodes every complete frame buffered on c (frames longer than
// max are refused; max <= 0 means wire.MaxFrame), hands each to fn,
// discards what was consumed and writes the answers in one call. A frame
// that cannot be decoded gets one BAD_REQUEST answer and closes the
// connection: framing cannot be resynchronised after garbage. It must run
// on c's event loop.
func DecodeAll(c gnet.Conn, max int, fn Handler) gnet.Action {
	d := Decoder{Max: max}
	return d.Decode(c, fn)
}

// Decoder decodes the frames buffered on a connection, as DecodeAll does,
// and may stop before a frame so that the rest stays buffered (a
// connection whose answers pile up is read no further).
type Decoder struct {
	// Max refuses longer frames (<= 0: wire.MaxFrame). It is read before
	// each frame: fn may change it (a size limit lifted by a HELLO).
	Max int
	// More, when set, is asked before each frame, with the bytes of the
	// answers built so far in this call; false stops decoding, leaving
	// that frame and those after it buffered on the connection.
	More func(out int) bool
	// Ahead, when set, is shown each window of buffered bytes before its
	// frames are decoded (it may end inside a frame); a hint only, such as
	// bringing into the cache what those frames will touch. buf is valid
	// only during the call.
	Ahead func(buf []byte)
	// Took, when set, makes a frame longer than a window gathered apart,
	// out of the connection's buffer, as it arrives, and is told the
	// bytes so held (0 once it is decoded): they are the connection's
	// unread input as much as its buffer's. Left in gnet's ring buffer,
	// a frame of 1 MiB grew it to 2 MiB by copies, was copied into it
	// from each read and out of it again (Peek), and the next frame's
	// first bytes kept it that large.
	Took func(n int)

	big  []byte // the frame gathered so far (Took)
	need int    // its length, header included
}

// Gathering is the length (header included) of the frame d is gathering,
// or 0.
func (d *Decoder) Gathering() int {
	if d.big == nil {
		return 0
	}
	return d.need
}

// gather moves the rest of the frame being gathered out of c's buffer, as
// far as it has arrived, and reports whether it is complete.
func (d *Decoder) gather(c gnet.Conn) bool {
	if n := min(c.InboundBuffered(), d.need-len(d.big)); n > 0 {
		d.big = ReadOn(c, d.big, n, d.need)
	}
	d.Took(len(d.big))
	return len(d.big) == d.need
}

// ReadOn moves n bytes of c's input (n <= c.InboundBuffered()) to the end
// of buf and returns it. buf grows toward want, the size it is expected
// to reach: to twice its capacity at a time, never past want unless n
// needs more, never by less than n.
func ReadOn(c gnet.Conn, buf []byte, n, want int) []byte {
	if len(buf)+n > cap(buf) {
		grown := make([]byte, len(buf), max(len(buf)+n, min(want, 2*cap(buf))))
		copy(grown, buf)
		buf = grown
	}
	at := len(buf)
	buf = buf[:at+n]
	_, _ = c.Read(buf[at:])
	return buf
}

// window is how much Decode looks at in one go (more when a frame is
// longer): a connection holding megabytes of requests is not copied whole
// each time it is read a little further.
const window = 64 << 10

// Answers are written once flushOut bytes are built; buffers up to keepOut
// go back to the pool (an answer holds up to wire.MaxFrame).
const (
	flushOut = 64 << 10
	keepOut  = 2 * wire.MaxFrame
)

// Decode decodes the frames buffered on c as DecodeAll does, within d's
// limits. It must run on c's event loop.
func (d *Decoder) Decode(c gnet.Conn, fn Handler) gnet.Action {
	bp := outPool.Get().(*[]byte)
	out := (*bp)[:0]
	defer func() {
		if cap(out) <= keepOut {
			*bp = out[:0]
			outPool.Put(bp)
		}
	}()
	action := gnet.None
	var f wire.Frame // one per call: fn takes its address, so it lives on the heap
	for stop := false; action == gnet.None && !stop; {
		var buf []byte
		gathered := d.big != nil
		if gathered {
			if !d.gather(c) {
				break
			}
			buf = d.big
		} else {
			have := c.InboundBuffered()
			if have < 4 {
				break
			}
			hdr, err := c.Peek(4)
			if err != nil {
				break
			}
			// Peek copies what is not contiguous: wait until the first
			// frame is complete, or a large frame arriving in many reads
			// would be copied again on each of them. (A length over the
			// limit goes on to be refused.)
			need := wire.FrameLen(hdr)
			if need > have && need-4 <= wire.MaxFrame && (d.Max <= 0 || need-4 <= d.Max) {
				if d.Took != nil && have >= window {
					// Longer than a window: gathered apart (every
					// byte buffered is its own).
					d.big, d.need = make([]byte, 0, min(need, 2*have)), need
					continue
				}
				break
			}
			if buf, err = c.Peek(min(have, max(need, window))); err != nil {
				break
			}
		}
		if d.Ahead != nil {
			d.Ahead(buf)
		}
		off := 0
		for action == gnet.None && off < len(buf) {
			if d.More != nil && !d.More(len(out)) {
				stop = true
				break
			}
			var n int
			var err error
			f, n, err = wire.Decode(buf[off:], d.Max)
			if err != nil {
				out = wire.Append(out, &wire.Frame{Op: wire.OpHello, Status: wire.StatusBadRequest, Value: []byte(err.Error())})
				action = gnet.Close
				break
			}
			if n == 0 {
				break
			}
			off += n
			out, action = fn(&f, out)
			if action == NotNow {
				off -= n
				action, stop = gnet.None, true
				break
			}
			if len(out) >= flushOut {
				// Big answers go out one by one: never megabytes of
				// them in one buffer of ours. A failed write closed c
				// (gnet closes on a write error) and freed its
				// descriptor number for the next socket or file this
				// process opens: nothing more may be written to it.
				if _, err := c.Write(out); err != nil {
					return gnet.Close
				}
				out = out[:0]
			}
		}
		if gathered {
			if off == 0 {
				break // (not now: kept)
			}
			d.big, d.need = nil, 0
			d.Took(0)
			continue
		}
		if off == 0 {
			break
		}
		_, _ = c.Discard(off)
	}
	if len(out) > 0 {
		_, _ = c.Write(out)
	}
	return action
}

// ReadFrame reads one frame from br into a buffer of its own (the decoded
// slices alias it and stay valid).
func ReadFrame(br *bufio.Reader) (wire.Frame, error) {
	var buf []byte
	return ReadFrameInto(br, &buf)
}

// ReadFrameInto reads one frame from br into *buf, grown when too small
// (the decoded slices alias it until *buf is used again): a reader of
// large answers that reuses one buffer.
func ReadFrameInto(br *bufio.Reader, buf *[]byte) (wire.Frame, error) {
	hdr, err := br.Peek(4)
	if err != nil {
		return wire.Frame{}, err
	}
	n := wire.FrameLen(hdr)
	if n-4 > wire.MaxFrame || n < wire.HeaderSize {
		return wire.Frame{}, fmt.Errorf("bad frame length %d", n)
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if _, err := io.ReadFull(br, b); err != nil {
		return wire.Frame{}, err
	}
	f, _, err := wire.Decode(b, 0)
	return f, err
}
