package bench

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/redis/rueidis"
)

// RueidisTargetName is the name of the RedisRueidis target in results.
const RueidisTargetName = "redis+rueidis"

// RedisRueidis returns the target of a Redis server at addr ("host:port")
// driven the way a Go program shares one client between goroutines: every
// requester is a github.com/redis/rueidis client with one connection, whose
// automatic pipelining coalesces the calls of all the goroutines sharing it
// into the connection's writes. It is the Redis counterpart of an ftkv run
// with Config.Goroutines > 1 (go-redis's pool does not pipeline across
// goroutines: each call takes a connection of its own).
func RedisRueidis(addr string) SharedTarget { return &rueidisTarget{addr: addr} }

type rueidisTarget struct{ addr string }

func (t *rueidisTarget) Name() string { return RueidisTargetName }
func (t *rueidisTarget) Addr() string { return t.addr }

func (t *rueidisTarget) NewRequester(ctx context.Context) (Requester, error) {
	return t.NewSharedRequester(ctx)
}

func (t *rueidisTarget) NewSharedRequester(ctx context.Context) (Requester, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{t.addr},
		ForceSingleClient: true, // a plain Redis: no CLUSTER probing
		PipelineMultiplex: -1,   // 2^0 = one pipelining connection, like the other targets
		DisableCache:      true, // no client-side caching: every GET goes to Redis
		Dialer:            net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", t.addr, err)
	}
	// NewClient has dialled and said HELLO; one PING proves commands pass.
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis %s: %w", t.addr, err)
	}
	return &rueidisRequester{c: c}, nil
}

type rueidisRequester struct{ c rueidis.Client }

// Do issues each op as its own call: concurrent calls from the goroutines
// sharing the requester are what rueidis pipelines. Failures are per op;
// rueidis reconnects by itself.
func (r *rueidisRequester) Do(ctx context.Context, batch []Op) error {
	for i := range batch {
		r.do(ctx, &batch[i])
	}
	return nil
}

func (r *rueidisRequester) do(ctx context.Context, op *Op) {
	var cmd rueidis.Completed
	if op.Kind == Get {
		cmd = r.c.B().Get().Key(string(op.Key)).Build()
	} else {
		// The value is shared and never modified: no copy, as for ftkv's Put.
		cmd = r.c.B().Set().Key(string(op.Key)).Value(rueidis.BinaryString(op.Value)).Build()
	}
	start := time.Now()
	res := r.c.Do(ctx, cmd)
	op.Latency = time.Since(start)
	op.Done = true
	err := res.Error()
	if op.Kind == Get && rueidis.IsRedisNil(err) {
		op.Miss, err = true, nil
	}
	op.Err = err
}

func (r *rueidisRequester) Close() error {
	r.c.Close()
	return nil
}
