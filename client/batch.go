package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ftkv/wire"
)

// BatchKind says what a BatchOp does.
type BatchKind uint8

// The operations a Batch can carry.
const (
	BatchGet BatchKind = iota
	BatchPut
	BatchDelete
)

// BatchOp is one operation of a Batch and, afterwards, its outcome.
type BatchOp struct {
	Kind  BatchKind
	Key   string
	Value []byte // Put: the value; Get: the value read (nil when absent)
	Found bool   // Get: the key exists
	Err   error  // the operation's own error (nil on success)
}

// Batch runs ops as one pipeline: every operation is sent before any
// answer is awaited, with one write per server, so a batch costs about one
// round trip instead of one per operation. Each operation keeps the
// guarantees of its single form (a Put or Delete is applied exactly once,
// each is linearizable); the batch is not atomic, and its operations may
// take effect in any order. An operation whose first answer asks for a
// retry (a view change, a broken connection) is retried on its own. Batch
// returns when every operation has its outcome in ops[i].Err, or with ctx's
// error once ctx ends (operations without an outcome then carry it too).
func (c *Client) Batch(ctx context.Context, ops []BatchOp) error {
	type sent struct {
		f    wire.Frame
		cn   *conn
		cl   *call
		v    *wire.View
		addr string
		sh   int
		err  error     // why the first attempt did not go out
		at   time.Time // when it was queued
	}
	ss := make([]sent, len(ops))
	var conns []*conn
	for i := range ops {
		op, s := &ops[i], &ss[i]
		op.Err, op.Found = nil, false
		switch op.Kind {
		case BatchGet:
			s.f = wire.Frame{Op: wire.OpGet, Key: []byte(op.Key)}
		case BatchPut:
			s.f = wire.Frame{Op: wire.OpPut, Key: []byte(op.Key), Value: op.Value}
		case BatchDelete:
			s.f = wire.Frame{Op: wire.OpDelete, Key: []byte(op.Key)}
		default:
			op.Err = fmt.Errorf("ftkv: batch: unknown operation %d", op.Kind)
			continue
		}
		if err := c.prepare(&s.f); err != nil {
			op.Err = err
			continue
		}
		if s.f.Op.IsWrite() {
			defer c.endSeq(s.f.Seq)
		}
		s.cn, s.v, s.addr, s.sh, s.err = c.route(ctx, &s.f)
		if s.err != nil {
			continue
		}
		s.at = time.Now()
		if s.cl, s.err = s.cn.queue(&s.f); s.err != nil {
			continue
		}
		if len(conns) == 0 || conns[len(conns)-1] != s.cn {
			conns = append(conns, s.cn)
		}
	}
	for _, cn := range conns {
		cn.flush() // (flushing a connection twice is harmless)
	}
	for i := range ops {
		op, s := &ops[i], &ss[i]
		if op.Err != nil {
			continue
		}
		var reply wire.Frame
		err := s.err
		retry := err != nil
		if s.cl != nil {
			reply, err = s.cn.wait(ctx, s.f.ID, s.cl)
			if err != nil && ctx.Err() == nil && !errors.Is(err, ErrClosed) {
				_ = c.refreshView(ctx, s.v.Epoch)
				retry = true
			}
			if err == nil {
				retry, err = c.outcome(ctx, reply, s.v, s.addr, s.sh)
			}
		}
		if retry && !errors.Is(err, ErrClosed) {
			var first time.Time // (zero: never sent)
			if s.cl != nil {
				first = s.at
			}
			reply, err = c.retry(ctx, &s.f, 1, first, err)
		}
		if err == nil {
			err = batchResult(op, reply)
		}
		op.Err = err
	}
	return ctx.Err()
}

func batchResult(op *BatchOp, r wire.Frame) error {
	switch {
	case op.Kind == BatchGet && r.Status == wire.StatusOK:
		op.Value, op.Found = r.Value, true
	case op.Kind == BatchGet && r.Status == wire.StatusNotFound:
		op.Value = nil
	case r.Status != wire.StatusOK:
		return fmt.Errorf("ftkv: %s: unexpected %s", r.Op, r.Status)
	}
	return nil
}
