package client

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"ftkv/wire"
)

// errConnBroken marks a request whose connection failed before an answer
// arrived: the outcome is unknown and the request must be retried with the
// same sequence number.
var errConnBroken = errors.New("connection broken")

// call is one request waiting for its answer. Calls are pooled: a caller
// takes one, the reader fills it and signals done, the caller copies the
// answer out and puts it back.
type call struct {
	id    atomic.Uint64 // the request id while registered on a conn
	state atomic.Uint32 // callRunning, callParked or callWoken
	done  chan struct{} // capacity 1: the reader's signal never blocks
	reply wire.Frame    // Key, Value and Aux copied out of the read buffer
	dst   []byte        // a non-empty Value is appended to dst (AppendGet)
	err   error
}

// A call's state says whether its caller was woken from a park by the
// answer (and so counted in its conn's awake).
const (
	callRunning uint32 = iota // the caller is not parked on done
	callParked                // the caller is (about to be) parked on done
	callWoken                 // signaled while parked: counted in conn.awake
)

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func getCall(dst []byte) *call {
	cl := callPool.Get().(*call)
	cl.dst = dst
	return cl
}

func putCall(cl *call) {
	cl.reply, cl.dst, cl.err = wire.Frame{}, nil, nil
	callPool.Put(cl)
}

// slotCount is the size of a connection's table of waiting calls: a
// request's slot is its id modulo slotCount. Servers answer at most
// limits.DefaultMaxInflight requests of a connection at a time; a request
// whose slot is still held by one 4096 ids older waits in the overflow map.
const slotCount = 4096

// noValue is the Value (and Key, Aux) of an answer whose field is empty:
// not nil, as the decoder's would not be, and shared (nobody writes into a
// slice of length and capacity 0).
var noValue = []byte{}

// conn is one pipelined connection: callers append frames to wbuf and
// whichever caller finds no write in progress flushes the batch (flat
// combining: no writer goroutine, batches form by themselves under load);
// one reader goroutine hands answers to their callers through a table of
// slots indexed by request id, without a lock on that path.
type conn struct {
	nc   net.Conn
	addr string

	slots     [slotCount]atomic.Pointer[call]
	overflowN atomic.Int32 // len(overflow), read without mu by the reader
	// awake counts callers this connection's answers woke that have not
	// run yet; while it is not zero a request is not written at once but
	// left for the last of them (wake), so that their next requests
	// share one write.
	awake atomic.Int32

	mu       sync.Mutex
	wbuf     []byte
	overflow map[uint64]*call // calls whose slot was taken
	nextID   uint64
	err      error // set once the connection has failed
	writing  bool  // a caller is flushing wbuf
	spare    []byte
	closed   chan struct{}
	brk      atomic.Bool // err != nil, read without mu

	// Write deadlines (see flushLocked), touched only by the writer.
	stall     time.Duration // a server taking nothing this long breaks the connection (0: writeStall)
	resumable bool          // a write cut by a deadline can go on (not TLS)
	dl        time.Time     // the write deadline set on nc
	dlCaller  bool          // dl is a caller's deadline, not a stall limit

	// reads counts the reader's reads from the socket (at most one count
	// per system call, none for a frame already buffered); overdue
	// watches it.
	reads atomic.Uint64
	// overdue's window, touched only by the client's watchOverdue: the
	// reader has received nothing since reads was wReads, and request
	// wID (0: none watched) has waited since wSince at least; wEmpty is
	// nextID when a look last found no request waiting.
	wReads uint64
	wID    uint64
	wSince time.Time
	wEmpty uint64
}

// writeStall is a connection's stall limit when none is set
// (timing.WriteStall): a server that takes no byte of a write for this
// long (between half of it and all of it) is taken as gone, and the
// connection fails. A stopped or partitioned server's socket never errs
// by itself (TCP retransmits for many minutes).
const writeStall = 10 * time.Second // timing: exception — the default of timing.WriteStall, for connections made without a Client

func newConn(nc net.Conn, addr string) *conn {
	c := &conn{
		nc:     nc,
		addr:   addr,
		closed: make(chan struct{}),
	}
	_, isTLS := nc.(*tls.Conn)
	c.resumable = !isTLS // (a TLS write cut short leaves the stream unusable)
	go c.readLoop()
	return c
}

// roundTrip sends f (its ID is assigned here) and waits for the answer.
func (c *conn) roundTrip(ctx context.Context, f *wire.Frame) (wire.Frame, error) {
	return c.roundTripInto(ctx, f, nil)
}

// roundTripInto is roundTrip appending a non-empty answer's value to dst.
func (c *conn) roundTripInto(ctx context.Context, f *wire.Frame, dst []byte) (wire.Frame, error) {
	cl := getCall(dst)
	dl, _ := ctx.Deadline()
	if err := c.send(f, cl, true, dl); err != nil {
		putCall(cl)
		return wire.Frame{}, err
	}
	return c.wait(ctx, cl)
}

// queue assigns f its ID and adds it to the next write without sending
// it; flush sends what is queued.
func (c *conn) queue(f *wire.Frame) (*call, error) {
	cl := getCall(nil)
	if err := c.send(f, cl, false, time.Time{}); err != nil {
		putCall(cl)
		return nil, err
	}
	return cl, nil
}

// send registers cl for f (giving f its ID) and appends f to wbuf; with
// flush, it also writes wbuf unless another caller is writing (until
// deadline, if not zero: see flushLocked).
func (c *conn) send(f *wire.Frame, cl *call, flush bool, deadline time.Time) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.nextID++
	id := c.nextID
	f.ID = id
	cl.id.Store(id)
	if s := &c.slots[id%slotCount]; s.Load() == nil {
		s.Store(cl)
	} else {
		if c.overflow == nil {
			c.overflow = make(map[uint64]*call)
		}
		c.overflow[id] = cl
		c.overflowN.Add(1)
	}
	c.wbuf = wire.Append(c.wbuf, f)
	if !flush || c.writing || c.awake.Load() > 0 {
		c.mu.Unlock()
		return nil
	}
	c.writing = true
	c.flushLocked(deadline)
	return nil
}

// flush writes the queued frames unless another caller is writing: that
// one sends them with its next batch. deadline (if not zero) is the
// caller's: see flushLocked.
func (c *conn) flush(deadline time.Time) {
	c.mu.Lock()
	if c.writing || len(c.wbuf) == 0 || c.awake.Load() > 0 {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.flushLocked(deadline)
}

// Why requests wait for the woken (automatic pipelining): a write is a
// system call that also runs the loopback's delivery, several
// microseconds here. When an answer arrives for each of many goroutines
// sharing a client, the reader wakes them all; each then sends its next
// request. Written at once, each would make its own write (two thirds of
// a shared client's CPU went to that). Instead a request finds awake > 0
// and stays in wbuf; the last woken caller to run writes everything
// queued (wake). The woken are runnable, so the wait is one pass of the
// scheduler, and nothing waits on a goroutine that is not runnable: only
// callers that were parked when their answer came are counted.
// (runtime.Gosched before writing did the same under a light load, but
// it queues the writer on the global run queue, which a busy scheduler
// serves only every 61st pass: a shared client pinned to one CPU had
// answers waiting 100 ms.)

// wake is called by a caller that its answer woke (state callWoken), once
// it runs: the last of them writes what the others queued, under its own
// deadline (if not zero): a server that stops reading must not hold a
// caller that has its answer (what is left is written on by drain).
func (c *conn) wake(deadline time.Time) {
	if c.awake.Add(-1) != 0 {
		return
	}
	if !c.resumable && !deadline.IsZero() {
		// On TLS a write cut short fails the connection: the others'
		// requests are written from a goroutine of their own, so a
		// caller that has its answer neither waits for them past its
		// deadline nor breaks the connection they share.
		go c.flush(time.Time{})
		return
	}
	c.flush(deadline)
}

// signal hands cl its outcome (reply or err, already set) and wakes its
// caller, counting it in awake if it was parked.
func (c *conn) signal(cl *call) {
	if cl.state.CompareAndSwap(callParked, callWoken) {
		c.awake.Add(1)
	}
	cl.done <- struct{}{}
}

// take removes the call registered for id, if any: the one that removes
// it (the reader with the answer, a canceled caller, fail) owns it.
func (c *conn) take(id uint64) *call {
	s := &c.slots[id%slotCount]
	if cl := s.Load(); cl != nil && cl.id.Load() == id && s.CompareAndSwap(cl, nil) {
		return cl
	}
	if c.overflowN.Load() == 0 {
		return nil
	}
	c.mu.Lock()
	cl := c.overflow[id]
	if cl != nil {
		delete(c.overflow, id)
		c.overflowN.Add(-1)
	}
	c.mu.Unlock()
	return cl
}

// wait returns the answer to cl's request, or ctx's error.
func (c *conn) wait(ctx context.Context, cl *call) (wire.Frame, error) {
	select {
	case <-cl.done:
		cl.state.Store(callRunning) // (signaled before we parked: not counted)
	default:
		cl.state.Store(callParked)
		select {
		case <-cl.done:
		case <-ctx.Done():
			if c.take(cl.id.Load()) == cl {
				// Removed before any answer: nobody signals it. It is
				// not pooled (the reader may still hold a pointer it
				// read before the removal).
				return wire.Frame{}, ctx.Err()
			}
			<-cl.done // the reader or fail has it and signals now
		}
		if cl.state.Swap(callRunning) == callWoken {
			dl, _ := ctx.Deadline()
			c.wake(dl)
		}
	}
	reply, err := cl.reply, cl.err
	putCall(cl)
	return reply, err
}

// flushLocked writes wbuf until it stays empty; called with mu held and
// writing set, it returns with mu released.
//
// A write blocks while the server takes nothing (its socket buffer is
// full: a stopped or partitioned server). The writing caller stops at
// its deadline (if not zero) like every other caller: what is left is
// written on by a goroutine of its own (drain), or, on TLS, whose stream
// a write cut short leaves unusable, the connection fails. A write that
// moves nothing for the stall limit fails the connection.
func (c *conn) flushLocked(deadline time.Time) {
	for len(c.wbuf) > 0 && c.err == nil {
		buf := c.wbuf
		c.wbuf = c.spare[:0]
		c.mu.Unlock()
		n, byCaller, err := c.write(buf, deadline)
		c.mu.Lock()
		if err != nil && byCaller && c.resumable && c.err == nil {
			rest := make([]byte, 0, len(buf)-n+len(c.wbuf))
			c.wbuf = append(append(rest, buf[n:]...), c.wbuf...)
			go c.drain() // (writing stays set: the drain is the writer now)
			c.mu.Unlock()
			return
		}
		if cap(buf) <= 1<<20 {
			c.spare = buf
		} else {
			c.spare = nil // do not pin a huge buffer after one large value
		}
		if err != nil {
			c.writing = false
			c.mu.Unlock()
			c.fail(fmt.Errorf("%w: write to %s: %v", errConnBroken, c.addr, err))
			return
		}
	}
	c.writing = false
	c.mu.Unlock()
}

// drain writes what a caller's deadline left in wbuf, without a caller.
func (c *conn) drain() {
	c.mu.Lock()
	c.flushLocked(time.Time{})
}

// write writes buf whole, under deadline (if not zero and sooner than the
// stall limit) or the stall limit, renewed while bytes move. It returns
// how much it wrote and, with an error, whether the caller's deadline
// ended it.
func (c *conn) write(buf []byte, deadline time.Time) (int, bool, error) {
	stall := cmp.Or(c.stall, writeStall)
	done := 0
	for {
		now := time.Now()
		byCaller := !deadline.IsZero() && deadline.Before(now.Add(stall))
		switch {
		case byCaller:
			if !c.dlCaller || !c.dl.Equal(deadline) {
				c.dl, c.dlCaller = deadline, true
				_ = c.nc.SetWriteDeadline(deadline)
			}
		case c.dlCaller || c.dl.Sub(now) < stall/2:
			// A stall limit is renewed only once half of it has passed
			// (a deadline costs a timer update).
			c.dl, c.dlCaller = now.Add(stall), false
			_ = c.nc.SetWriteDeadline(c.dl)
		}
		n, err := c.nc.Write(buf[done:])
		done += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return done, false, err
		}
		if byCaller {
			return done, true, err
		}
		if n == 0 {
			return done, false, fmt.Errorf("the server took nothing for %v: %w", stall, err)
		}
		if !c.resumable { // (a TLS write cut short cannot go on)
			return done, false, fmt.Errorf("a write to the server did not finish within %v: %w", stall, err)
		}
		// (bytes moved: a slow reader, not a stopped one)
	}
}

// readBufSize is the reader's buffer: an answer that fits is decoded in
// place and only its value copied out.
const readBufSize = 64 << 10

func (c *conn) readLoop() {
	r := bufio.NewReaderSize(c.nc, readBufSize)
	for {
		if r.Buffered() < 4 {
			c.reads.Add(1) // (about to wait for the server)
		}
		hdr, err := r.Peek(4)
		if err != nil {
			c.fail(fmt.Errorf("%w: read from %s: %v", errConnBroken, c.addr, err))
			return
		}
		n := wire.FrameLen(hdr)
		if n-4 > wire.MaxFrame || n < wire.HeaderSize {
			c.fail(fmt.Errorf("%w: %w: bad frame length %d from %s (not an ftkv port?)", errConnBroken, wire.ErrMalformed, n, c.addr))
			return
		}
		var buf []byte
		inPlace := n <= r.Size()
		if r.Buffered() < n {
			c.reads.Add(1) // (the frame's rest comes from the socket)
		}
		if inPlace {
			buf, err = r.Peek(n)
		} else {
			// Larger than the buffer: its own allocation, which the
			// answer may alias.
			buf = make([]byte, n)
			_, err = io.ReadFull(r, buf)
		}
		if err != nil {
			c.fail(fmt.Errorf("%w: read from %s: %v", errConnBroken, c.addr, err))
			return
		}
		f, _, err := wire.Decode(buf, 0)
		if err != nil {
			c.fail(fmt.Errorf("%w: from %s: %w", errConnBroken, c.addr, err))
			return
		}
		if f.ID == 0 && f.Status != wire.StatusOK {
			// No request has id 0: a refusal of the connection itself
			// (max clients, a frame too large, clear text on a TLS
			// port), which the server closes.
			c.fail(fmt.Errorf("%w: %s refused the connection: %s (%s)", errConnBroken, c.addr, f.Value, f.Status))
			return
		}
		if cl := c.take(f.ID); cl != nil {
			if inPlace {
				// The buffer is reused: the caller gets copies.
				f.Key, f.Aux = own(nil, f.Key), own(nil, f.Aux)
				f.Value = own(cl.dst, f.Value)
			} else if cl.dst != nil {
				f.Value = own(cl.dst, f.Value)
			}
			cl.reply = f
			c.signal(cl)
		}
		if inPlace {
			_, _ = r.Discard(n)
		}
	}
}

// own returns a copy of b appended to dst (noValue when both are empty).
func own(dst, b []byte) []byte {
	if len(b) == 0 {
		if dst == nil {
			return noValue
		}
		return dst
	}
	return append(dst, b...)
}

// fail marks the connection broken and fails every waiting call.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	c.brk.Store(true)
	overflow := c.overflow
	c.overflow = nil
	c.overflowN.Store(0)
	close(c.closed)
	c.mu.Unlock()
	if tc, ok := c.nc.(*tls.Conn); ok {
		// tls.Conn.Close first writes a close_notify alert, waiting up
		// to 5 s to send it: to a server that takes nothing (the very
		// reason a connection fails here, often) that held the caller
		// and every waiting call 5 s past their deadlines. The server
		// needs no alert to see the connection end.
		_ = tc.NetConn().Close()
	} else {
		_ = c.nc.Close()
	}
	// No call is registered after err is set: every one is in a slot or
	// in overflow now, unless the reader or its canceled caller took it.
	for i := range c.slots {
		if cl := c.slots[i].Swap(nil); cl != nil {
			cl.err = err
			c.signal(cl)
		}
	}
	for _, cl := range overflow {
		cl.err = err
		c.signal(cl)
	}
}

func (c *conn) broken() bool { return c.brk.Load() }

// overdue reports whether a request has waited at least d on c with
// nothing arriving from the server. Called only by the client's
// watchOverdue, at intervals well under d: a request is first seen at
// the first look after it was sent (and after the last bytes arrived), and
// found late d after that. After a true it watches for another d, so a
// slow server that the view still names is checked once per d.
func (c *conn) overdue(now time.Time, d time.Duration) bool {
	if reads := c.reads.Load(); reads != c.wReads {
		// Bytes came: no window yet.
		c.wReads, c.wID, c.wEmpty = reads, 0, ^uint64(0)
		return false
	}
	if c.wID == 0 || c.gone(c.wID) {
		// No window, or its request was answered or given up: the
		// oldest request still waiting starts one (none sent since a
		// look found none: nothing to look for).
		c.mu.Lock()
		sent := c.nextID
		c.mu.Unlock()
		if sent == c.wEmpty {
			return false
		}
		c.wID = c.oldestWaiting()
		if c.wID == 0 {
			c.wEmpty = sent
			return false
		}
		c.wSince = now
		return false
	}
	if now.Sub(c.wSince) < d {
		return false
	}
	c.wSince = now
	return true
}

// oldestWaiting returns the lowest id of a request still waiting for
// its answer (0: none).
func (c *conn) oldestWaiting() uint64 {
	var oldest uint64
	for i := range c.slots {
		if cl := c.slots[i].Load(); cl != nil {
			if id := cl.id.Load(); id != 0 && (oldest == 0 || id < oldest) {
				oldest = id
			}
		}
	}
	if c.overflowN.Load() == 0 {
		return oldest
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.overflow {
		if oldest == 0 || id < oldest {
			oldest = id
		}
	}
	return oldest
}

// gone reports whether the request id no longer waits on c.
func (c *conn) gone(id uint64) bool {
	if cl := c.slots[id%slotCount].Load(); cl != nil && cl.id.Load() == id {
		return false
	}
	if c.overflowN.Load() == 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.overflow[id]
	return !ok
}
