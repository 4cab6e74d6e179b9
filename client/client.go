package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/rs/zerolog"

	"ftkv/hashring"
	"ftkv/internal/netopt"
	"ftkv/limits"
	"ftkv/timing"
	"ftkv/wire"
)

// DialFunc opens a TCP connection; tests substitute one to put a proxy in the path.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

type options struct {
	dial       DialFunc
	log        zerolog.Logger
	conns      int
	timing     timing.Config
	sessionTTL time.Duration
	// user and password (WithAuth; user "" = none) authenticate every
	// connection (auth.go).
	user, password string
	tls            *tls.Config // WithTLS (tls.go)
}

// DefaultSessionTTL is the servers' default session TTL (how long a
// server remembers the writes of a client silent that long).
const DefaultSessionTTL = limits.DefaultSessionTTL

// Option configures a Client.
type Option func(*options)

// WithDialer replaces the function used to open every connection
// (coordinator and servers).
func WithDialer(d DialFunc) Option { return func(o *options) { o.dial = d } }

// WithTiming sets the durations the client waits and retries after
// (default timing.Default(); a client has no failure timeout of its own):
// Handshake bounds a connect and a view request, RetryMax the pause
// between a request's attempts.
func WithTiming(t timing.Config) Option { return func(o *options) { o.timing = t } }

// WithSessionTTL sets the servers' session TTL the client assumes when the
// coordinator's view does not carry one (default DefaultSessionTTL). A
// write is retried for at most seven eighths of it after it was first
// sent; past that the call returns ErrSessionExpired.
func WithSessionTTL(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.sessionTTL = d
		}
	}
}

// WithLogger routes the client's diagnostics to l (default: discarded).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithConnsPerServer sets how many pipelined connections the client keeps to
// each server (default 1; requests from all goroutines share them).
func WithConnsPerServer(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.conns = n
		}
	}
}

// Client talks to an ftkv cluster. It is safe for concurrent use.
type Client struct {
	coordAddrs []string // the coordinators' client addresses
	opts       options
	id         uint64

	view        atomic.Pointer[wire.View]
	serverEpoch atomic.Uint64 // the highest epoch a server has reported

	viewMu     sync.Mutex                    // serialises view refreshes
	refreshing atomic.Pointer[chan struct{}] // closed when the refreshLater running ends

	mu    sync.Mutex
	conns map[string][]*conn
	// live is a copy of conns for the lock-free path of serverConn,
	// replaced (never changed) under mu whenever conns changes.
	live       atomic.Pointer[map[string][]*conn]
	rr         atomic.Uint64
	dialing    map[string]*dialCall // a server being dialed, by address
	coordConns map[string]*conn     // by coordinator address
	coordPref  string               // the coordinator that answered last
	closed     bool
	stop       chan struct{} // closed by Close: ends watchOverdue
	// life ends with Close: the context of what no caller owns (a dial
	// that callers share).
	life    context.Context
	endLife context.CancelFunc

	seq *seqs // write sequence numbers and their floor
}

// Dial connects to the coordinator at addr, fetches the cluster view and
// returns a ready client. For a group of coordinators addr is a
// comma-separated list ("h1:7000,h2:7010,h3:7020"): the client asks any
// one that answers, moving on to the next when one is unreachable, does not
// answer within the handshake timeout, or redirects to the leader.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	addrs, err := parseCoordAddrs(addr)
	if err != nil {
		return nil, err
	}
	o := options{log: zerolog.Nop(), conns: 1, timing: timing.Default(), sessionTTL: DefaultSessionTTL}
	for _, opt := range opts {
		opt(&o)
	}
	if o.timing.AnswerOverdue <= 0 {
		// A Config made before the field existed, or by hand.
		o.timing.AnswerOverdue = timing.New(o.timing.FailureTimeout).AnswerOverdue
	}
	if o.dial == nil {
		o.dial = netopt.Dialer(0).DialContext
	}
	if o.tls != nil {
		o.dial = tlsDial(o.dial, o.tls)
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	c := &Client{
		coordAddrs: addrs,
		opts:       o,
		id:         binary.BigEndian.Uint64(idb[:]) | 1, // never 0: 0 means "no dedup"
		conns:      make(map[string][]*conn),
		dialing:    make(map[string]*dialCall),
		coordConns: make(map[string]*conn),
		seq:        newSeqs(),
		stop:       make(chan struct{}),
	}
	c.life, c.endLife = context.WithCancel(context.Background())
	if err := c.refreshView(ctx, 0); err != nil {
		c.Close()
		return nil, err
	}
	go c.watchOverdue()
	return c, nil
}

// Close closes every connection. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	if !c.closed {
		close(c.stop)
		c.endLife()
	}
	c.closed = true
	all := c.conns
	c.conns = map[string][]*conn{}
	c.live.Store(nil)
	cos := c.coordConns
	c.coordConns = map[string]*conn{}
	c.mu.Unlock()
	for _, cs := range all {
		for _, cn := range cs {
			cn.fail(ErrClosed)
		}
	}
	for _, cn := range cos {
		cn.fail(ErrClosed)
	}
	return nil
}

// View returns the cluster view the client currently uses.
func (c *Client) View() wire.View {
	if v := c.view.Load(); v != nil {
		return *v
	}
	return wire.View{}
}

func (c *Client) dialConn(ctx context.Context, addr string) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.opts.timing.Handshake)
	defer cancel()
	nc, err := c.opts.dial(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	cn := newConn(nc, addr)
	cn.stall = c.opts.timing.WriteStall
	if err := c.hello(ctx, cn, nc, addr); err != nil {
		cn.fail(err)
		return nil, err
	}
	return cn, nil
}

func (c *Client) serverConn(ctx context.Context, addr string) (*conn, error) {
	if m := c.live.Load(); m != nil {
		// The usual case, without a lock: a full set of connections;
		// take the next one unless it has failed (then sort them out
		// below).
		if cs := (*m)[addr]; len(cs) >= c.opts.conns {
			cn := cs[0]
			if len(cs) > 1 {
				cn = cs[c.rr.Add(1)%uint64(len(cs))]
			}
			if !cn.broken() {
				return cn, nil
			}
		}
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		cs := c.conns[addr]
		live := cs[:0:0]
		for _, cn := range cs {
			if !cn.broken() {
				live = append(live, cn)
			}
		}
		d := c.dialing[addr]
		if len(live) >= c.opts.conns || (d != nil && len(live) > 0) {
			cn := live[c.rr.Add(1)%uint64(len(live))]
			c.mu.Unlock()
			return cn, nil
		}
		if d == nil {
			// Callers that find no connection share one dial, which
			// belongs to none of them: one whose context ends (a short
			// deadline, a canceled request) stops waiting for it
			// without ending it for the others. Close ends it.
			d = &dialCall{done: make(chan struct{})}
			c.dialing[addr] = d
			go c.dial(addr, d)
		}
		c.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.stop: // (Close, whatever the dialer does)
			return nil, ErrClosed
		}
		if d.err != nil {
			return nil, d.err
		}
		if !d.cn.broken() {
			return d.cn, nil
		}
	}
}

// dial connects to the server at addr for serverConn's callers, adds the
// connection to the client's and ends d.
func (c *Client) dial(addr string, d *dialCall) {
	cn, err := c.dialConn(c.life, addr)
	if errors.Is(err, context.DeadlineExceeded) {
		// The handshake timeout, not a caller's deadline.
		err = fmt.Errorf("connecting timed out: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.dialing, addr)
	if c.closed {
		if err == nil {
			cn.fail(ErrClosed)
		}
		err = ErrClosed
	}
	d.cn, d.err = cn, err
	close(d.done)
	if err != nil {
		return
	}
	fresh := []*conn{cn}
	for _, old := range c.conns[addr] {
		if !old.broken() {
			fresh = append(fresh, old)
		}
	}
	c.conns[addr] = fresh
	snap := make(map[string][]*conn, len(c.conns))
	for a, cs := range c.conns {
		snap[a] = cs
	}
	c.live.Store(&snap)
}

// dialCall is a dial to a server in progress: callers that find no
// connection to that server while it runs wait for it (serverConn).
type dialCall struct {
	done chan struct{} // closed when the dial ended
	cn   *conn         // the connection, or
	err  error         // the dial's error (both set before done is closed)
}

// beginSeq allocates the sequence number of a write; endSeq retires it once
// its outcome is known so the servers can forget its deduplication record.
func (c *Client) beginSeq() uint64 { return c.seq.begin() }

func (c *Client) endSeq(s uint64) { c.seq.end(s) }

func (c *Client) currentFloor() uint64 { return c.seq.current() }

// do sends f to the primary of key's shard, following view changes and
// retrying broken connections until the outcome is known or ctx ends.
func (c *Client) do(ctx context.Context, f *wire.Frame) (wire.Frame, error) {
	if err := c.prepare(f); err != nil {
		return wire.Frame{}, err
	}
	if f.Op.IsWrite() {
		// The seq (given when the write is first sent: route) is retired
		// whatever the outcome: it is never sent again, so the servers
		// may forget its dedup record.
		defer func() {
			if f.Seq != 0 {
				c.endSeq(f.Seq)
			}
		}()
	}
	return c.retry(ctx, f, nil, 0, time.Time{}, nil)
}

// retryWindow is how long after its first sending a write may still be
// retried: the session TTL (the view's, else the option's) less an
// eighth, which covers the retry's own trip to the server.
func (c *Client) retryWindow(v *wire.View) time.Duration {
	ttl := c.opts.sessionTTL
	if v != nil && v.SessionTTL > 0 {
		ttl = v.SessionTTL
	}
	return ttl - ttl/8
}

// prepare checks f's limits.
func (c *Client) prepare(f *wire.Frame) error {
	if err := wire.CheckLimits(f.Key, f.Value, f.Aux); err != nil {
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	return nil
}

// stampSeq gives a write its sequence number when it is first sent. A
// write that never leaves the client (its shard has no server in the
// view: both copies lost) then holds no seq, so it does not hold the
// floor of the client's writes to every other shard: the servers keep
// every record at or above the floor, and refuse a client's writes
// beyond max_session_records of them.
func (c *Client) stampSeq(f *wire.Frame) {
	if f.Op.IsWrite() && f.Seq == 0 {
		f.Client = c.id
		f.Seq = c.beginSeq()
	}
}

// route finds the connection to the primary of f's shard in the current
// view (fetching a view if there is none) and stamps f with the epoch.
func (c *Client) route(ctx context.Context, f *wire.Frame) (*conn, *wire.View, string, int, error) {
	v := c.view.Load()
	if v == nil {
		if err := c.refreshView(ctx, 0); err != nil {
			return nil, nil, "", 0, err
		}
		v = c.view.Load()
	}
	shard := hashring.New(len(v.Shards)).ShardBytes(f.Key)
	owner := v.Owner(shard)
	if owner == nil || owner.Addr == "" {
		_ = c.refreshView(ctx, v.Epoch)
		return nil, v, "", shard, fmt.Errorf("%w: shard %d has no server at epoch %d", ErrUnavailable, shard, v.Epoch)
	}
	cn, err := c.serverConn(ctx, owner.Addr)
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			_ = c.refreshView(ctx, v.Epoch)
			err = fmt.Errorf("server %s: %w", owner.Addr, err)
		}
		return nil, v, owner.Addr, shard, err
	}
	f.Epoch = v.Epoch
	if f.Op.IsWrite() {
		c.stampSeq(f)
		f.Floor = c.currentFloor()
	}
	return cn, v, owner.Addr, shard, nil
}

// outcome sorts an answer: final (with the error to return, if any), or
// to be retried after a view refresh (retry, with the reason).
func (c *Client) outcome(ctx context.Context, reply wire.Frame, v *wire.View, addr string, shard int) (retry bool, err error) {
	switch reply.Status {
	case wire.StatusWrongServer, wire.StatusStaleEpoch:
		c.noteServerEpoch(reply.Epoch)
		_ = c.refreshView(ctx, v.Epoch)
		return true, fmt.Errorf("server %s: %s at epoch %d", addr, reply.Status, reply.Epoch)
	case wire.StatusUnavailable:
		_ = c.refreshView(ctx, v.Epoch)
		if len(reply.Value) > 0 {
			// The server's reason, e.g. its log's disk error.
			return true, fmt.Errorf("%w: shard %d: %s", ErrUnavailable, shard, reply.Value)
		}
		return true, fmt.Errorf("%w: shard %d", ErrUnavailable, shard)
	case wire.StatusTooLarge:
		return false, fmt.Errorf("%w: %s", ErrTooLarge, reply.Value)
	case wire.StatusSessionExpired:
		return false, fmt.Errorf("%w: server %s: %s", ErrSessionExpired, addr, reply.Value)
	case wire.StatusBadRequest, wire.StatusError:
		return false, fmt.Errorf("ftkv: server %s: %s: %s", addr, reply.Status, reply.Value)
	case wire.StatusForbidden, wire.StatusUnauthenticated:
		return false, refusal(reply, "server "+addr)
	}
	return false, nil
}

// retry sends f (prepared) until its outcome is known or ctx ends (a
// non-empty value in the answer appended to dst, when dst is not nil); from is
// the number of attempts already made, sent when f was first sent (zero:
// not yet), lastErr the reason the last attempt failed. A write sent
// before carries wire.FlagRetry, and is not sent again once its retry
// window has passed: its outcome is then unknown (ErrSessionExpired).
func (c *Client) retry(ctx context.Context, f *wire.Frame, dst []byte, from int, sent time.Time, lastErr error) (wire.Frame, error) {
	retryMin := c.opts.timing.ClientRetryMin
	backoff := retryMin
	for attempt := from; ; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return wire.Frame{}, c.ctxErr(ctx, lastErr)
			case <-t.C:
			}
			if backoff < c.opts.timing.RetryMax {
				backoff *= 2
			}
		}
		if ctx.Err() != nil || c.awaitRefresh(ctx) != nil {
			return wire.Frame{}, c.ctxErr(ctx, lastErr)
		}
		cn, v, addr, shard, err := c.route(ctx, f)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return wire.Frame{}, ErrClosed
			}
			if errors.Is(err, ErrAuth) {
				return wire.Frame{}, err // credentials do not improve with retries
			}
			lastErr = err
			continue
		}
		if f.Op.IsWrite() {
			if sent.IsZero() {
				sent = time.Now()
			} else {
				if time.Since(sent) > c.retryWindow(v) {
					return wire.Frame{}, fmt.Errorf("%w: retried for %s (last error: %v)", ErrSessionExpired,
						time.Since(sent).Round(time.Millisecond), lastErr)
				}
				f.Flags |= wire.FlagRetry
			}
		}
		reply, err := cn.roundTripInto(ctx, f, dst)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return wire.Frame{}, ErrClosed
			}
			lastErr = err
			if ctx.Err() != nil {
				lastErr = silentErr(shard, addr, err)
				c.refreshLater(v.Epoch)
				continue // (returns the context's error)
			}
			_ = c.refreshView(ctx, v.Epoch)
			continue
		}
		again, err := c.outcome(ctx, reply, v, addr, shard)
		if again {
			lastErr = err
			if reply.Status == wire.StatusWrongServer || reply.Status == wire.StatusStaleEpoch {
				if attempt < 2 {
					backoff = retryMin / 2
				}
			}
			continue
		}
		return reply, err
	}
}

// silentErr is why a call whose context ended while shard's server at
// addr held it failed: the server took the request and did not answer (a
// frozen last copy of its shard, say), named for the caller's error
// instead of the context's error twice.
// (err: what the wait for the answer ended with, kept when it is not the
// context's own.)
func silentErr(shard int, addr string, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("shard %d: server %s did not answer", shard, addr)
}

func (c *Client) ctxErr(ctx context.Context, last error) error {
	if last != nil {
		return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
	}
	return ctx.Err()
}

// Get returns the value of key, or an error wrapping ErrNotFound.
func (c *Client) Get(ctx context.Context, key string) ([]byte, error) {
	return c.get(ctx, nil, key)
}

// AppendGet appends the value of key to dst and returns the extended
// slice, or dst and an error wrapping ErrNotFound. With a dst of enough
// capacity, reused from call to call, a Get allocates nothing.
func (c *Client) AppendGet(ctx context.Context, dst []byte, key string) ([]byte, error) {
	v, err := c.get(ctx, dst, key)
	if err != nil {
		return dst, err
	}
	return v, nil
}

func (c *Client) get(ctx context.Context, dst []byte, key string) ([]byte, error) {
	f := wire.Frame{Op: wire.OpGet, Key: keyBytes(key)}
	if err := c.prepare(&f); err != nil {
		return nil, err
	}
	r, err := c.retry(ctx, &f, dst, 0, time.Time{}, nil)
	if err != nil {
		return nil, err
	}
	if r.Status == wire.StatusNotFound {
		return nil, ErrNotFound
	}
	if r.Status != wire.StatusOK {
		return nil, fmt.Errorf("ftkv: get: unexpected %s", r.Status)
	}
	return r.Value, nil
}

// keyBytes is key's bytes without a copy: frames only read their key
// (encode, hash, send again).
func keyBytes(key string) []byte { return unsafe.Slice(unsafe.StringData(key), len(key)) }

// Put sets key to value. It returns once both copies hold the value.
func (c *Client) Put(ctx context.Context, key string, value []byte) error {
	return c.write(ctx, &wire.Frame{Op: wire.OpPut, Key: keyBytes(key), Value: value})
}

// Delete removes key (deleting an absent key succeeds).
func (c *Client) Delete(ctx context.Context, key string) error {
	return c.write(ctx, &wire.Frame{Op: wire.OpDelete, Key: keyBytes(key)})
}

// Append appends value to key's value, creating the key if absent.
func (c *Client) Append(ctx context.Context, key string, value []byte) error {
	return c.write(ctx, &wire.Frame{Op: wire.OpAppend, Key: keyBytes(key), Value: value})
}

func (c *Client) write(ctx context.Context, f *wire.Frame) error {
	r, err := c.do(ctx, f)
	if err != nil {
		return err
	}
	if r.Status != wire.StatusOK {
		return fmt.Errorf("ftkv: %s: unexpected %s", f.Op, r.Status)
	}
	return nil
}

// CompareAndSwap sets key to new only if its value is old (old == nil: only
// if the key is absent). It reports whether the swap happened.
func (c *Client) CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error) {
	// The current value is not asked for: a mismatch on a key of 1 MiB
	// brings back no megabyte.
	swapped, _, err := c.cas(ctx, wire.OpCAS, key, old, new, wire.FlagNoCurrent)
	return swapped, err
}

// CompareAndDelete deletes key only if its value is old (old == nil: only
// if the key is absent, which deletes nothing). It reports whether the
// value matched (and so whether the key, if it existed, is deleted).
func (c *Client) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	swapped, _, err := c.cas(ctx, wire.OpCAD, key, old, nil, wire.FlagNoCurrent)
	return swapped, err
}

// CompareAndSwapCurrent is CompareAndSwap that also returns, on a mismatch,
// the current value (nil when the key is absent).
func (c *Client) CompareAndSwapCurrent(ctx context.Context, key string, old, new []byte) (bool, []byte, error) {
	return c.cas(ctx, wire.OpCAS, key, old, new, 0)
}

// cas is the compare-and-swap (op OpCAS) or compare-and-delete (OpCAD)
// with the request's flags besides FlagOldPresent.
func (c *Client) cas(ctx context.Context, op wire.Op, key string, old, new []byte, flags uint8) (bool, []byte, error) {
	f := &wire.Frame{Op: op, Key: keyBytes(key), Value: new, Aux: old, Flags: flags}
	if old != nil {
		f.Flags |= wire.FlagOldPresent
	}
	r, err := c.do(ctx, f)
	if err != nil {
		return false, nil, err
	}
	switch r.Status {
	case wire.StatusOK:
		return true, nil, nil
	case wire.StatusMismatch:
		if r.Flags&wire.FlagOldPresent == 0 {
			return false, nil, nil
		}
		if r.Value == nil {
			return false, []byte{}, nil
		}
		return false, r.Value, nil
	}
	return false, nil, fmt.Errorf("ftkv: cas: unexpected %s", r.Status)
}
