package bench

import (
	"context"
	"errors"
	"time"

	"ftkv/client"
)

// FTKV returns the target of an ftkv cluster whose coordinator serves
// clients at coordAddr. Every requester is its own client.Client with one
// connection per server, so a run with Connections c holds c connections to
// each server, as a Redis run holds c connections to Redis. Extra options
// (e.g. client.WithDialer) are appended to that. It is a SharedTarget:
// with Config.Goroutines G, G goroutines call Get and Put on each client.
func FTKV(coordAddr string, opts ...client.Option) Target {
	return &ftkvTarget{addr: coordAddr, opts: opts}
}

type ftkvTarget struct {
	addr string
	opts []client.Option
}

func (t *ftkvTarget) Name() string { return "ftkv" }
func (t *ftkvTarget) Addr() string { return t.addr }

func (t *ftkvTarget) NewRequester(ctx context.Context) (Requester, error) {
	opts := append([]client.Option{client.WithConnsPerServer(1)}, t.opts...)
	c, err := client.Dial(ctx, t.addr, opts...)
	if err != nil {
		return nil, err
	}
	return &ftkvRequester{c: c}, nil
}

// NewSharedRequester is NewRequester: a client.Client is safe for
// concurrent use, and a single operation's Do touches nothing else.
func (t *ftkvTarget) NewSharedRequester(ctx context.Context) (Requester, error) {
	return t.NewRequester(ctx)
}

type ftkvRequester struct {
	c   *client.Client
	ops []client.BatchOp
}

// Do sends a batch of more than one operation as one client.Batch: every
// operation goes out before any answer is awaited, as a pipelined Redis
// client does.
func (r *ftkvRequester) Do(ctx context.Context, batch []Op) error {
	if len(batch) == 1 {
		r.do(ctx, &batch[0])
		return nil
	}
	if cap(r.ops) < len(batch) {
		r.ops = make([]client.BatchOp, len(batch))
	}
	ops := r.ops[:len(batch)]
	for i := range batch {
		op := &batch[i]
		ops[i] = client.BatchOp{Kind: client.BatchPut, Key: string(op.Key), Value: op.Value}
		if op.Kind == Get {
			ops[i].Kind = client.BatchGet
		}
	}
	start := time.Now()
	_ = r.c.Batch(ctx, ops)
	lat := time.Since(start)
	for i := range batch {
		op := &batch[i]
		op.Latency, op.Err, op.Done = lat, ops[i].Err, true
		op.Miss = op.Kind == Get && ops[i].Err == nil && !ops[i].Found
		ops[i].Value = nil
	}
	return nil
}

func (r *ftkvRequester) do(ctx context.Context, op *Op) {
	start := time.Now()
	var err error
	if op.Kind == Get {
		_, err = r.c.Get(ctx, string(op.Key))
		if errors.Is(err, client.ErrNotFound) {
			op.Miss, err = true, nil
		}
	} else {
		err = r.c.Put(ctx, string(op.Key), op.Value)
	}
	op.Latency = time.Since(start)
	op.Err = err
	op.Done = true
}

func (r *ftkvRequester) Close() error { return r.c.Close() }
