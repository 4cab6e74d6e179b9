package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"ftkv/wire"
)

// errConnBroken marks a request whose connection failed before an answer
// arrived: the outcome is unknown and the request must be retried with the
// same sequence number.
var errConnBroken = errors.New("connection broken")

// call is one request waiting for its answer.
type call struct {
	done  chan struct{}
	reply wire.Frame
	err   error
}

// conn is one pipelined connection: callers append frames to wbuf and
// whichever caller finds no write in progress flushes the batch; one reader
// goroutine routes answers to their callers by request id.
type conn struct {
	nc   net.Conn
	addr string

	mu      sync.Mutex
	wbuf    []byte
	pending map[uint64]*call
	nextID  uint64
	err     error // set once the connection has failed
	writing bool  // a caller is flushing wbuf
	spare   []byte
	closed  chan struct{}
}

func newConn(nc net.Conn, addr string) *conn {
	c := &conn{
		nc:      nc,
		addr:    addr,
		pending: make(map[uint64]*call),
		closed:  make(chan struct{}),
	}
	go c.readLoop()
	return c
}

// roundTrip sends f (its ID is assigned here) and waits for the answer.
func (c *conn) roundTrip(ctx context.Context, f *wire.Frame) (wire.Frame, error) {
	cl, err := c.queue(f)
	if err != nil {
		return wire.Frame{}, err
	}
	c.flush()
	return c.wait(ctx, f.ID, cl)
}

// queue assigns f its ID and adds it to the next write without sending
// it; flush sends what is queued.
func (c *conn) queue(f *wire.Frame) (*call, error) {
	cl := &call{done: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	c.nextID++
	f.ID = c.nextID
	c.pending[f.ID] = cl
	c.wbuf = wire.Append(c.wbuf, f)
	return cl, nil
}

// flush writes the queued frames unless another caller is writing: that
// one sends them with its next batch (flat combining: no writer
// goroutine, batches form by themselves under load).
func (c *conn) flush() {
	c.mu.Lock()
	if c.writing || len(c.wbuf) == 0 {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.flushLocked()
}

// wait returns the answer to request id, or ctx's error.
func (c *conn) wait(ctx context.Context, id uint64, cl *call) (wire.Frame, error) {
	select {
	case <-cl.done:
		return cl.reply, cl.err
	default:
	}
	select {
	case <-cl.done:
		return cl.reply, cl.err
	case <-ctx.Done():
		c.mu.Lock()
		if c.pending != nil {
			delete(c.pending, id)
		}
		c.mu.Unlock()
		return wire.Frame{}, ctx.Err()
	}
}

// flushLocked writes wbuf until it stays empty; called with mu held and
// writing set, it returns with mu released.
func (c *conn) flushLocked() {
	for len(c.wbuf) > 0 && c.err == nil {
		buf := c.wbuf
		c.wbuf = c.spare[:0]
		c.mu.Unlock()
		_, err := c.nc.Write(buf)
		c.mu.Lock()
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

func (c *conn) readLoop() {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			c.fail(fmt.Errorf("%w: read from %s: %v", errConnBroken, c.addr, err))
			return
		}
		n := wire.FrameLen(hdr[:])
		if n-4 > wire.MaxFrame || n < wire.HeaderSize {
			c.fail(fmt.Errorf("%w: bad frame length %d from %s", errConnBroken, n, c.addr))
			return
		}
		// Each answer gets its own buffer: values returned to callers
		// alias it, so it must never be reused.
		buf := make([]byte, n)
		copy(buf, hdr[:])
		if _, err := io.ReadFull(r, buf[4:]); err != nil {
			c.fail(fmt.Errorf("%w: read from %s: %v", errConnBroken, c.addr, err))
			return
		}
		f, _, err := wire.Decode(buf, 0)
		if err != nil {
			c.fail(fmt.Errorf("%w: from %s: %v", errConnBroken, c.addr, err))
			return
		}
		c.mu.Lock()
		cl := c.pending[f.ID]
		delete(c.pending, f.ID)
		c.mu.Unlock()
		if cl != nil {
			cl.reply = f
			close(cl.done)
		}
	}
}

// fail marks the connection broken and fails every waiting call.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = nil
	close(c.closed)
	c.mu.Unlock()
	_ = c.nc.Close()
	for _, cl := range pending {
		cl.err = err
		close(cl.done)
	}
}

func (c *conn) broken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}
