package bench

import (
	"context"
	"errors"
	"sync"
	"time"

	"ftkv/client"
)

// FTKV returns the target of an ftkv cluster whose coordinator serves
// clients at coordAddr. Every requester is its own client.Client with one
// connection per server, so a run with Connections c holds c connections to
// each server, as a Redis run holds c connections to Redis. Extra options
// (e.g. client.WithDialer) are appended to that.
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

type ftkvRequester struct {
	c  *client.Client
	wg sync.WaitGroup
}

// Do issues the batch concurrently, one goroutine per op beyond the first;
// the client pipelines them on its connections.
func (r *ftkvRequester) Do(ctx context.Context, batch []Op) error {
	if len(batch) == 1 {
		r.do(ctx, &batch[0])
		return nil
	}
	r.wg.Add(len(batch) - 1)
	for i := 1; i < len(batch); i++ {
		go func(op *Op) {
			defer r.wg.Done()
			r.do(ctx, op)
		}(&batch[i])
	}
	r.do(ctx, &batch[0])
	r.wg.Wait()
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
