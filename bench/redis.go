package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"ftkv/bench/resp"
)

// Redis returns the target of a Redis server at addr ("host:port"). Each
// requester is one TCP connection; a batch of P operations is pipelined the
// way redis-benchmark -P does it: P commands written at once, then P replies
// read, each op's latency taken when its reply has been parsed.
func Redis(addr string, opts ...RedisOption) Target {
	t := &redisTarget{addr: addr}
	for _, o := range opts {
		o(t)
	}
	return t
}

// RedisOption configures the Redis target.
type RedisOption func(*redisTarget)

// RedisWait makes every SET synchronous the way Redis offers it: each SET is
// followed by "WAIT replicas timeout" in the same pipeline, and the put
// counts as answered only when WAIT reports at least replicas copies
// (otherwise it fails with ErrNotReplicated). Its latency runs to WAIT's
// reply. replicas < 1 turns the option off; timeout rounds to milliseconds
// (at least 1 ms: Redis reads 0 as "wait forever").
func RedisWait(replicas int, timeout time.Duration) RedisOption {
	return func(t *redisTarget) {
		t.waitReplicas = max(replicas, 0)
		t.waitMillis = max(timeout.Milliseconds(), 1)
	}
}

var (
	cmdGet  = []byte("GET")
	cmdSet  = []byte("SET")
	cmdPing = []byte("PING")
	cmdWait = []byte("WAIT")
)

// appendOp appends the command of op: GET key or SET key value.
func appendOp(dst []byte, op *Op) []byte {
	if op.Kind == Get {
		return resp.AppendCommand(dst, cmdGet, op.Key)
	}
	return resp.AppendCommand(dst, cmdSet, op.Key, op.Value)
}

// ErrNotReplicated fails a put of a RedisWait target whose WAIT saw fewer
// replicas than asked for before its timeout.
var ErrNotReplicated = errors.New("redis: WAIT timed out before enough replicas acknowledged")

// RedisError is an error reply ("-ERR …") of the server.
type RedisError string

func (e RedisError) Error() string { return "redis: " + string(e) }

type redisTarget struct {
	addr         string
	waitReplicas int   // > 0: WAIT after every SET
	waitMillis   int64 // WAIT's timeout
}

// Name is "redis", or "redis+wait" when every SET waits for replicas.
func (t *redisTarget) Name() string {
	if t.waitReplicas > 0 {
		return "redis+wait"
	}
	return "redis"
}

func (t *redisTarget) Addr() string { return t.addr }

func (t *redisTarget) NewRequester(ctx context.Context) (Requester, error) {
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", t.addr, err)
	}
	r := newRedisRequester(nc)
	if t.waitReplicas > 0 {
		r.waitArgs = [][]byte{cmdWait, strconv.AppendInt(nil, int64(t.waitReplicas), 10), strconv.AppendInt(nil, t.waitMillis, 10)}
		r.waitReplicas = int64(t.waitReplicas)
	}
	if err := r.ping(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("redis %s: %w", t.addr, err)
	}
	return r, nil
}

type redisRequester struct {
	nc      net.Conn
	mu      sync.Mutex      // guards watched against the AfterFunc
	watched context.Context // the ctx whose cancellation unblocks nc
	unwatch func() bool
	wbuf    []byte
	rbuf    []byte // rbuf[rpos:rend] holds bytes read but not parsed yet
	rpos    int
	rend    int

	waitArgs     [][]byte // WAIT numreplicas timeout, sent after every SET; nil: none
	waitReplicas int64
}

func newRedisRequester(nc net.Conn) *redisRequester {
	return &redisRequester{nc: nc, rbuf: make([]byte, 16<<10)}
}

// ping checks the peer speaks RESP and accepts commands (no AUTH needed).
func (r *redisRequester) ping(ctx context.Context) error {
	if d, ok := ctx.Deadline(); ok {
		_ = r.nc.SetDeadline(d)
	}
	if _, err := r.nc.Write(resp.AppendCommand(r.wbuf[:0], cmdPing)); err != nil {
		return err
	}
	rep, err := r.next()
	if err != nil {
		return err
	}
	if rep.Type == '-' {
		return RedisError(rep.Str)
	}
	if rep.Type != '+' || !bytes.Equal(rep.Str, []byte("PONG")) {
		return fmt.Errorf("%w: PING answered %q", resp.ErrProtocol, rep.Str)
	}
	_ = r.nc.SetDeadline(time.Time{}) // the dial ctx's deadline is not the batches'
	return nil
}

// setDeadline applies ctx's deadline to the connection and makes ctx's
// cancellation interrupt blocked reads and writes. The loop keeps one ctx
// across batches, so the watch is set up once per ctx, not per batch.
func (r *redisRequester) setDeadline(ctx context.Context) {
	if ctx == r.watched {
		if d, ok := ctx.Deadline(); ok {
			_ = r.nc.SetDeadline(d)
		}
		return
	}
	// A new ctx: the old one may have been cancelled between batches,
	// leaving a deadline in the past that must not hit this batch.
	if r.unwatch != nil {
		r.unwatch()
	}
	r.mu.Lock()
	r.watched = ctx
	r.mu.Unlock()
	d, _ := ctx.Deadline() // zero: none
	_ = r.nc.SetDeadline(d)
	r.unwatch = context.AfterFunc(ctx, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.watched == ctx { // not a late call for a ctx already replaced
			_ = r.nc.SetDeadline(time.Unix(1, 0))
		}
	})
}

// Do sends the batch as one pipelined write and reads its replies.
func (r *redisRequester) Do(ctx context.Context, batch []Op) error {
	r.setDeadline(ctx)
	r.wbuf = r.wbuf[:0]
	for i := range batch {
		r.wbuf = appendOp(r.wbuf, &batch[i])
		if r.waitArgs != nil && batch[i].Kind == Put {
			r.wbuf = resp.AppendCommand(r.wbuf, r.waitArgs...)
		}
	}
	start := time.Now()
	if _, err := r.nc.Write(r.wbuf); err != nil {
		return err
	}
	for i := range batch {
		op := &batch[i]
		rep, err := r.next()
		if err != nil {
			return err
		}
		op.Latency = time.Since(start)
		op.Done = true
		switch {
		case rep.Type == '-':
			op.Err = RedisError(rep.Str)
		case op.Kind == Get && rep.Type == '$':
			op.Miss = rep.Nil
		case op.Kind == Put && rep.Type == '+':
		default:
			op.Err = fmt.Errorf("%w: %s answered with type %q", resp.ErrProtocol, op.Kind, rep.Type)
		}
		if r.waitArgs != nil && op.Kind == Put {
			if err := r.readWait(op); err != nil {
				return err
			}
			op.Latency = time.Since(start)
		}
	}
	return nil
}

// readWait reads the reply of the WAIT that follows op's SET. A SET that
// failed keeps its own error.
func (r *redisRequester) readWait(op *Op) error {
	rep, err := r.next()
	if err != nil {
		op.Done = false // the put's outcome is not known without WAIT's answer
		return err
	}
	if op.Err != nil {
		return nil
	}
	switch {
	case rep.Type == '-':
		op.Err = RedisError(rep.Str)
	case rep.Type != ':':
		op.Err = fmt.Errorf("%w: WAIT answered with type %q", resp.ErrProtocol, rep.Type)
	case rep.Int < r.waitReplicas:
		op.Err = fmt.Errorf("%w (%d of %d)", ErrNotReplicated, rep.Int, r.waitReplicas)
	}
	return nil
}

// next returns the next reply, reading as much as needed. The reply aliases
// the read buffer until the next call.
func (r *redisRequester) next() (resp.Reply, error) {
	for {
		rep, n, err := resp.ParseReply(r.rbuf[r.rpos:r.rend])
		if err != nil {
			return resp.Reply{}, err
		}
		if n > 0 {
			r.rpos += n
			return rep, nil
		}
		// Need more: make room at the end, moving the partial reply down
		// or growing the buffer for a reply larger than it.
		if r.rpos > 0 {
			r.rend = copy(r.rbuf, r.rbuf[r.rpos:r.rend])
			r.rpos = 0
		}
		if r.rend == len(r.rbuf) {
			r.rbuf = append(r.rbuf, make([]byte, len(r.rbuf))...)
		}
		m, err := r.nc.Read(r.rbuf[r.rend:])
		r.rend += m
		if err != nil && m == 0 {
			return resp.Reply{}, fmt.Errorf("reading reply: %w", err)
		}
	}
}

func (r *redisRequester) Close() error {
	if r.unwatch != nil {
		r.unwatch()
	}
	return r.nc.Close()
}
