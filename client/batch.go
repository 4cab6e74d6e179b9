package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ftkv/hashring"
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
	// MaxValue, on a Get, is the longest value it takes (0: any): a
	// longer one is not sent, and Err is ErrTooLarge.
	MaxValue int
	Err      error // the operation's own error (nil on success)
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
//
// The view, each shard's connection and the dedup floor are looked up
// once per batch, not once per operation, and the time read once.
func (c *Client) Batch(ctx context.Context, ops []BatchOp) error {
	if err := c.awaitRefresh(ctx); err != nil {
		for i := range ops {
			ops[i].Err = err
		}
		return err
	}
	v := c.view.Load()
	var noView error // why there is no view to route by: every op is retried
	if v == nil || len(v.Shards) == 0 {
		if noView = c.refreshView(ctx, 0); noView == nil {
			v = c.view.Load()
		}
		if v == nil || len(v.Shards) == 0 {
			v = &wire.View{}
			if noView == nil {
				noView = fmt.Errorf("%w: the view has no shards", ErrUnavailable)
			}
		}
	}
	type sent struct {
		f     wire.Frame
		cn    *conn
		cl    *call
		addr  string
		shard int
		err   error // why the first attempt did not go out
		write bool  // a write: its sequence number, once it has one (f.Seq != 0), is retired
	}
	type route struct {
		cn   *conn
		addr string
		err  error
		done bool
	}
	ss := make([]sent, len(ops))
	routes := make([]route, len(v.Shards))
	var ring hashring.Ring
	if noView == nil {
		ring = hashring.New(len(v.Shards))
	}
	defer func() {
		// Each write's seq is retired whatever the outcome, as Batch does.
		c.seq.mu.Lock()
		for i := range ss {
			if ss[i].write && ss[i].f.Seq != 0 {
				c.seq.endLocked(ss[i].f.Seq)
			}
		}
		c.seq.mu.Unlock()
	}()
	anyWrite := false
	for i := range ops {
		op, s := &ops[i], &ss[i]
		op.Err, op.Found = nil, false
		key := keyBytes(op.Key)
		switch op.Kind {
		case BatchGet:
			s.f = wire.Frame{Op: wire.OpGet, Key: key}
			if op.MaxValue > 0 {
				s.f.Flags, s.f.Seq = wire.FlagValueCap, uint64(op.MaxValue)
			}
		case BatchPut:
			s.f = wire.Frame{Op: wire.OpPut, Key: key, Value: op.Value}
		case BatchDelete:
			s.f = wire.Frame{Op: wire.OpDelete, Key: key}
		default:
			op.Err = fmt.Errorf("ftkv: batch: unknown operation %d", op.Kind)
			continue
		}
		if err := c.prepare(&s.f); err != nil {
			op.Err = err
			continue
		}
		if s.f.Op.IsWrite() {
			s.write, anyWrite = true, true
		}
		if noView != nil {
			s.err = noView
			continue
		}
		s.shard = ring.ShardBytes(s.f.Key)
		rt := &routes[s.shard]
		if !rt.done {
			rt.done = true
			rt.cn, rt.addr, rt.err = c.shardConn(ctx, v, s.shard)
		}
		s.cn, s.addr, s.err = rt.cn, rt.addr, rt.err
		s.f.Epoch = v.Epoch
		if s.write && s.err == nil {
			c.stampSeq(&s.f) // (one whose shard has no server gets its seq when a retry sends it)
		}
	}
	// The floor once, after every write of the batch that goes out now
	// has its seq: no higher than any of theirs, as each one's own would
	// be (one sent later by a retry gets its seq and floor then).
	var floor uint64
	if anyWrite {
		floor = c.currentFloor()
	}
	at := time.Now()
	var conns []*conn
	for i := range ops {
		op, s := &ops[i], &ss[i]
		if op.Err != nil || s.err != nil {
			continue
		}
		if s.write {
			s.f.Floor = floor
		}
		if s.cl, s.err = s.cn.queue(&s.f); s.err != nil {
			continue
		}
		if len(conns) == 0 || conns[len(conns)-1] != s.cn {
			conns = append(conns, s.cn)
		}
	}
	dl, _ := ctx.Deadline()
	for _, cn := range conns {
		cn.flush(dl) // (flushing a connection twice is harmless)
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
			reply, err = s.cn.wait(ctx, s.cl)
			if err != nil && !errors.Is(err, ErrClosed) {
				if ctx.Err() != nil {
					// No outcome, and no time to retry: the context's
					// error, as the operation's single form returns.
					err = c.ctxErr(ctx, silentErr(s.shard, s.addr, err))
					c.refreshLater(v.Epoch)
				} else {
					_ = c.refreshView(ctx, v.Epoch)
					retry = true
				}
			}
			if err == nil && reply.Status != wire.StatusOK && reply.Status != wire.StatusNotFound {
				retry, err = c.outcome(ctx, reply, v, s.addr, s.shard)
			}
		}
		if retry && !errors.Is(err, ErrClosed) {
			var first time.Time // (zero: never sent)
			if s.cl != nil {
				first = at
			}
			reply, err = c.retry(ctx, &s.f, nil, 1, first, err)
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

// shardConn is route's lookup for shard of view v: the connection to its
// primary, or route's error.
func (c *Client) shardConn(ctx context.Context, v *wire.View, shard int) (*conn, string, error) {
	owner := v.Owner(shard)
	if owner == nil || owner.Addr == "" {
		_ = c.refreshView(ctx, v.Epoch)
		return nil, "", fmt.Errorf("%w: shard %d has no server at epoch %d", ErrUnavailable, shard, v.Epoch)
	}
	cn, err := c.serverConn(ctx, owner.Addr)
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			_ = c.refreshView(ctx, v.Epoch)
			err = fmt.Errorf("server %s: %w", owner.Addr, err)
		}
		return nil, owner.Addr, err
	}
	return cn, owner.Addr, nil
}
