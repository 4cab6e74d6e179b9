package server

import (
	"sync"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/connlimit"
	"ftkv/wire"
)

// replyBatch collects answers per connection so each connection gets one
// write per batch instead of one per answer. Batches and their buffers are
// reused (newReplyBatch, release): a busy server answers without
// allocating.
type replyBatch struct {
	conns []gnet.Conn
	bufs  [][]byte
	index map[gnet.Conn]int // once there are many connections
}

const replyBatchScan = 16

var replyBatchPool = sync.Pool{New: func() any { return new(replyBatch) }}

func newReplyBatch() *replyBatch { return replyBatchPool.Get().(*replyBatch) }

// add queues the answer f to a write of cost bytes read on c (counted
// by connlimit.Begin, which returned lim: every answer added is to such a
// write).
func (rb *replyBatch) add(c gnet.Conn, lim *connlimit.State, cost int, f *wire.Frame) {
	if c == nil {
		return
	}
	lim.Done(cost)
	i := rb.find(c)
	if i < 0 {
		i = len(rb.conns)
		rb.conns = append(rb.conns, c)
		if i < cap(rb.bufs) {
			rb.bufs = rb.bufs[:i+1]
			rb.bufs[i] = rb.bufs[i][:0]
		} else {
			rb.bufs = append(rb.bufs, nil)
		}
		if rb.index != nil {
			rb.index[c] = i
		} else if i >= replyBatchScan {
			rb.index = make(map[gnet.Conn]int, 2*i)
			for j, c := range rb.conns {
				rb.index[c] = j
			}
		}
	}
	rb.bufs[i] = wire.Append(rb.bufs[i], f)
}

func (rb *replyBatch) find(c gnet.Conn) int {
	if rb.index != nil {
		if i, ok := rb.index[c]; ok {
			return i
		}
		return -1
	}
	for i := len(rb.conns) - 1; i >= 0; i-- {
		if rb.conns[i] == c {
			return i
		}
	}
	return -1
}

// flush writes the answers: directly for connections of loop (the event
// loop the caller runs on, or nil), through AsyncWrite for the others
// (which keeps the buffer: it is not reused).
func (rb *replyBatch) flush(loop gnet.EventLoop) {
	for i, c := range rb.conns {
		b := rb.bufs[i]
		if loop != nil && c.EventLoop() == loop {
			if writeOnLoop(c, b) == nil { // not to a client gone meanwhile
				connlimit.Wrote(c)
			}
		} else {
			_ = c.AsyncWrite(b, connlimit.AfterWrite)
			rb.bufs[i] = nil
		}
	}
}

// release empties rb and returns it to the pool.
func (rb *replyBatch) release() {
	clear(rb.conns)
	rb.conns = rb.conns[:0]
	for i, b := range rb.bufs {
		if cap(b) > 64<<10 {
			rb.bufs[i] = nil
		}
	}
	rb.bufs = rb.bufs[:0]
	rb.index = nil
	replyBatchPool.Put(rb)
}
