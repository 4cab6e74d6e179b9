package hostile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"ftkv/wire"
)

// SlowReader stores one value of Size bytes, then pipelines GETs of it on
// Conns connections, writing as fast as the sockets take them and never
// reading an answer, until Duration passes. A server that buffers every
// answer grows by Size per request the kernel lets through.
func SlowReader(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults(10*time.Second, 4)
	tg, err := Resolve(ctx, cfg)
	if err != nil {
		return Result{Probe: "slow-reader"}, err
	}
	t := newTally("slow-reader", tg.Addr)
	value := bytes.Repeat([]byte{'s'}, cfg.Size)
	key, _, err := findKey(ctx, cfg, tg.Addr, "hostile/slow-reader", value)
	if err != nil {
		return t.result(), err
	}
	what := "GETs"
	if cfg.Writes {
		what = "GETs, each followed by a PUT of the same value,"
	}
	t.note("key %q holds %s; %s pipelined on %d connections, answers never read", key, Bytes(int64(cfg.Size)), what, cfg.Conns)
	var batch []byte
	const perBatch = 64
	for i := 0; i < perBatch; i++ {
		batch = wire.Append(batch, &wire.Frame{Op: wire.OpGet, ID: uint64(2*i + 1), Key: []byte(key)})
		if cfg.Writes {
			batch = wire.Append(batch, &wire.Frame{Op: wire.OpPut, ID: uint64(2*i + 2), Key: []byte(key), Value: value})
		}
	}
	frameSize := len(batch) / perBatch
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < cfg.Conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := dial(ctx, cfg, tg.Addr)
			if err != nil {
				t.dialErr(err)
				return
			}
			t.opened()
			defer closeHard(nc)
			last := time.Now()
			var sent int64
			rem := batch
			for ctx.Err() == nil {
				_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				n, err := nc.Write(rem)
				if n > 0 {
					last = time.Now()
					// Count whole frames only: n may end inside one.
					before := sent / int64(frameSize)
					sent += int64(n)
					t.sent(int64(n), sent/int64(frameSize)-before)
				}
				rem = rem[n:]
				if len(rem) == 0 {
					rem = batch
				}
				if err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						continue
					}
					if serverClosed(err) {
						t.closed(time.Since(last))
					} else {
						t.err(err)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	return t.result(), nil
}

// heldConn is a connection a probe holds open without reading it.
type heldConn struct {
	nc   *net.TCPConn
	last time.Time // the probe's last byte on it
	gone bool
}

// holdAndWatch peeks at every held connection every interval until ctx
// ends, tallying those the server closes (reading any answer it sent
// first), and closes them all at the end. It returns how many were still
// open at the end.
func holdAndWatch(ctx context.Context, conns []*heldConn, interval time.Duration, t *tally) int {
	check := func() int {
		open := 0
		for _, h := range conns {
			if h.gone {
				continue
			}
			closed, data := peek(h.nc)
			if data {
				closed = drainAnswer(h.nc, 50*time.Millisecond, t) || closed
			}
			if closed {
				h.gone = true
				t.closed(time.Since(h.last))
				continue
			}
			open++
		}
		return open
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			open := check()
			for _, h := range conns {
				closeHard(h.nc)
			}
			return open
		case <-tick.C:
			check()
		}
	}
}

// openMany opens up to n connections to addr with a few dialers in
// parallel until ctx ends, running first on each, and returns them.
func openMany(ctx context.Context, cfg Config, addr string, n int, t *tally, first func(*net.TCPConn) error) []*heldConn {
	var (
		mu    sync.Mutex
		conns []*heldConn
		next  atomic.Int64
		fails atomic.Int64
		wg    sync.WaitGroup
	)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				nc, err := dial(ctx, cfg, addr)
				if err != nil {
					if ctx.Err() == nil {
						t.dialErr(err)
					}
					// A server that stopped accepting: do not spin.
					if fails.Add(1) > 1000 {
						return
					}
					continue
				}
				t.opened()
				if first != nil {
					if err := first(nc); err != nil {
						t.err(err)
					}
				}
				mu.Lock()
				conns = append(conns, &heldConn{nc: nc, last: time.Now()})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns
}

// IdleConns opens Conns connections to the server's client port and holds
// them, sending nothing, for Duration after the last one opened (opening
// itself takes at most Duration). It first raises this process's soft
// RLIMIT_NOFILE to the hard limit and notes when that cannot reach Conns.
func IdleConns(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults(10*time.Second, 20000)
	tg, err := Resolve(ctx, cfg)
	if err != nil {
		return Result{Probe: "idle-conns"}, err
	}
	t := newTally("idle-conns", tg.Addr)
	n := cfg.Conns
	soft, hard, err := RaiseNoFile()
	switch {
	case err != nil:
		t.note("RLIMIT_NOFILE not raised: %v", err)
	case soft < uint64(n)+64:
		t.note("RLIMIT_NOFILE soft %d (hard %d) cannot hold %d connections: opening %d", soft, hard, n, int(soft)-64)
		n = max(int(soft)-64, 1)
	default:
		t.note("RLIMIT_NOFILE soft %d hard %d", soft, hard)
	}
	octx, ocancel := context.WithTimeout(ctx, cfg.Duration)
	conns := openMany(octx, cfg, tg.Addr, n, t, nil)
	ocancel()
	opened := time.Since(t.t0)
	cfg.logf("idle-conns: %d connections open after %s", len(conns), opened.Round(time.Millisecond))
	hctx, hcancel := context.WithTimeout(ctx, cfg.Duration)
	defer hcancel()
	open := holdAndWatch(hctx, conns, time.Second, t)
	t.note("%d of %d connections opened in %s; %d still open after holding them %s", len(conns), n, opened.Round(time.Millisecond), open, cfg.Duration)
	return t.result(), nil
}

// HalfFrames opens Conns connections that each send the first Fill bytes
// (default 30, half a header) of a PUT frame announcing a Size-byte value,
// then nothing, and watches for Duration which of them the server closes.
func HalfFrames(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults(10*time.Second, 1000)
	if cfg.Fill <= 0 {
		cfg.Fill = wire.HeaderSize / 2
	}
	tg, err := Resolve(ctx, cfg)
	if err != nil {
		return Result{Probe: "half-frames"}, err
	}
	t := newTally("half-frames", tg.Addr)
	frame := wire.Append(nil, &wire.Frame{Op: wire.OpPut, ID: 1, Key: []byte("hostile/half-frame"), Value: make([]byte, min(cfg.Size, wire.MaxValue))})
	fill := min(cfg.Fill, len(frame)-1)
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	conns := openMany(ctx, cfg, tg.Addr, cfg.Conns, t, func(nc *net.TCPConn) error {
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		n, err := nc.Write(frame[:fill])
		t.sent(int64(n), 0)
		return err
	})
	t.note("%d connections each sent %d of a %d-byte frame, then nothing", len(conns), fill, len(frame))
	open := holdAndWatch(ctx, conns, 250*time.Millisecond, t)
	t.note("%d still open after %s", open, cfg.Duration)
	return t.result(), nil
}

// hugeHeader is a frame header whose length prefix says 4 GiB (the
// largest a 32-bit prefix holds).
func hugeHeader(op wire.Op) []byte {
	h := wire.Append(nil, &wire.Frame{Op: op, ID: 1})
	binary.BigEndian.PutUint32(h, 0xFFFFFFFF)
	binary.BigEndian.PutUint32(h[52:], 0xFFFFFFFF-(wire.HeaderSize-4))
	return h
}

type port struct{ name, addr string }

func ports(tg Target, client bool) []port {
	var ps []port
	if client && tg.Addr != "" {
		ps = append(ps, port{"client", tg.Addr})
	}
	if tg.PeerAddr != "" {
		ps = append(ps, port{"peer", tg.PeerAddr})
	}
	if tg.Ctl != "" {
		ps = append(ps, port{"control", tg.Ctl})
	}
	return ps
}

// HugeLength sends, Conns times on each of the client, peer and control
// ports, a frame header whose length prefix says 4 GiB, and waits up to 2s
// for the server to answer and close.
func HugeLength(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults(10*time.Second, 20)
	tg, err := Resolve(ctx, cfg)
	if err != nil {
		return Result{Probe: "huge-length"}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var parts []Result
	for _, p := range ports(tg, true) {
		op := wire.OpPut
		switch p.name {
		case "peer":
			op = wire.OpReplHello
		case "control":
			op = wire.OpHello
		}
		t := newTally("huge-length "+p.name, p.addr)
		hdr := hugeHeader(op)
		notClosed := 0
		for i := 0; i < cfg.Conns && ctx.Err() == nil; i++ {
			nc, err := dial(ctx, cfg, p.addr)
			if err != nil {
				t.dialErr(err)
				continue
			}
			t.opened()
			_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
			n, err := nc.Write(hdr)
			t.sent(int64(n), 0)
			sentAt := time.Now()
			if err != nil && serverClosed(err) {
				t.closed(0)
			} else if drainAnswer(nc, 2*time.Second, t) {
				t.closed(time.Since(sentAt))
			} else {
				notClosed++
			}
			closeHard(nc)
		}
		if notClosed > 0 {
			t.note("%d connections still open 2s after the 4 GiB length prefix", notClosed)
		}
		parts = append(parts, t.result())
	}
	return merge("huge-length", tg.Addr, parts), nil
}

// UnauthBig aims at the control and peer ports, which take nothing but an
// authenticated HELLO: first Conns connections each send only a header
// announcing a 4 MiB frame and wait up to 2s to be closed; then, until
// Duration, Conns connections per port at a time each send a whole 4 MiB
// frame without HELLO, read the answer and close.
func UnauthBig(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults(10*time.Second, 8)
	tg, err := Resolve(ctx, cfg)
	if err != nil {
		return Result{Probe: "unauth-big"}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	big := wire.Append(nil, &wire.Frame{Op: wire.OpPut, ID: 1, Key: []byte("k"), Value: make([]byte, wire.MaxFrame-(wire.HeaderSize-4)-1)})
	hdr := big[:wire.HeaderSize]
	var parts []Result
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range ports(tg, false) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The header alone: a server that checks the size before
			// authentication closes at once; one that waits for the body
			// holds the connection.
			th := newTally("unauth-big "+p.name+" header only", p.addr)
			hs := openMany(ctx, cfg, p.addr, cfg.Conns, th, func(nc *net.TCPConn) error {
				_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
				n, err := nc.Write(hdr)
				th.sent(int64(n), 0)
				return err
			})
			hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
			open := holdAndWatch(hctx, hs, 100*time.Millisecond, th)
			hcancel()
			th.note("%d of %d connections still open 2s after a header announcing a %s frame", open, len(hs), Bytes(wire.MaxFrame))
			hres := th.result()
			// Whole frames.
			tw := newTally("unauth-big "+p.name+" whole frames", p.addr)
			var ww sync.WaitGroup
			for i := 0; i < cfg.Conns; i++ {
				ww.Add(1)
				go func() {
					defer ww.Done()
					for ctx.Err() == nil {
						nc, err := dial(ctx, cfg, p.addr)
						if err != nil {
							if ctx.Err() == nil {
								tw.dialErr(err)
								time.Sleep(10 * time.Millisecond)
							}
							continue
						}
						tw.opened()
						_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
						n, err := nc.Write(big)
						sentAt := time.Now()
						frames := int64(0)
						if n == len(big) {
							frames = 1
						}
						tw.sent(int64(n), frames)
						if err != nil && serverClosed(err) {
							tw.closed(0)
						} else if drainAnswer(nc, 2*time.Second, tw) {
							tw.closed(time.Since(sentAt))
						}
						closeHard(nc)
					}
				}()
			}
			ww.Wait()
			mu.Lock()
			parts = append(parts, hres, tw.result())
			mu.Unlock()
		}()
	}
	wg.Wait()
	return merge("unauth-big", tg.Addr, parts), nil
}

// BadSeqs pipelines writes (up to 256 unanswered per connection) on Conns
// connections for Duration: even connections use a random client id and a
// random sequence number for every write, odd ones one client id with
// descending sequence numbers; all with floor 0. Each connection is a Part;
// their RateFirst and RateLast show whether the server slows down as the
// records pile up.
func BadSeqs(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults(10*time.Second, 2)
	tg, err := Resolve(ctx, cfg)
	if err != nil {
		return Result{Probe: "bad-seqs"}, err
	}
	key, _, err := findKey(ctx, cfg, tg.Addr, "hostile/bad-seqs", []byte("v"))
	if err != nil {
		return Result{Probe: "bad-seqs", Target: tg.Addr}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	parts := make([]Result, cfg.Conns)
	var wg sync.WaitGroup
	for i := 0; i < cfg.Conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(cfg.Seed + int64(i)))
			mode := "random client ids"
			fixed := rng.Uint64() | 1
			seq := uint64(1) << 40
			next := func(f *wire.Frame) {
				f.Client, f.Seq = rng.Uint64()|1, rng.Uint64()>>1+1
			}
			if i%2 == 1 {
				mode = "descending seqs"
				next = func(f *wire.Frame) { f.Client, f.Seq = fixed, seq; seq-- }
			}
			t := newTally("bad-seqs "+mode, tg.Addr)
			pipeline(ctx, cfg, tg.Addr, t, 256, func(id uint64, dst []byte) []byte {
				f := wire.Frame{Op: wire.OpPut, ID: id, Key: []byte(key), Value: []byte("bad-seqs")}
				next(&f)
				return wire.Append(dst, &f)
			})
			parts[i] = t.result()
		}()
	}
	wg.Wait()
	return merge("bad-seqs", tg.Addr, parts), nil
}

// WriteFlood pipelines PUTs of a Size-byte value (1 KiB) on Conns
// connections (200), each keeping Window requests (4096, the default
// max_inflight) unanswered and reading every answer, until Duration: a
// heavy client, or many, that reads its answers but writes faster than
// the shard commits. Each connection alone stays within its limits; what
// the server holds for all of them together must stay bounded.
func WriteFlood(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Size <= 0 {
		cfg.Size = 1 << 10
	}
	if cfg.Window <= 0 {
		cfg.Window = 4096
	}
	cfg = cfg.withDefaults(10*time.Second, 200)
	tg, err := Resolve(ctx, cfg)
	if err != nil {
		return Result{Probe: "write-flood"}, err
	}
	value := bytes.Repeat([]byte{'w'}, cfg.Size)
	key, _, err := findKey(ctx, cfg, tg.Addr, "hostile/write-flood", value)
	if err != nil {
		return Result{Probe: "write-flood", Target: tg.Addr}, err
	}
	t := newTally("write-flood", tg.Addr)
	t.note("PUTs of %s to key %q pipelined on %d connections, up to %d unanswered on each, answers read", Bytes(int64(cfg.Size)), key, cfg.Conns, cfg.Window)
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < cfg.Conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pipeline(ctx, cfg, tg.Addr, t, cfg.Window, func(id uint64, dst []byte) []byte {
				return wire.Append(dst, &wire.Frame{Op: wire.OpPut, ID: id, Key: []byte(key), Value: value})
			})
		}()
	}
	wg.Wait()
	return t.result(), nil
}

// pipeline keeps up to window requests from mk unanswered on one
// connection until ctx ends, reading and tallying every answer.
func pipeline(ctx context.Context, cfg Config, addr string, t *tally, window int, mk func(id uint64, dst []byte) []byte) {
	nc, err := dial(ctx, cfg, addr)
	if err != nil {
		t.dialErr(err)
		return
	}
	t.opened()
	credits := make(chan struct{}, window)
	for i := 0; i < window; i++ {
		credits <- struct{}{}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		br := bufio.NewReaderSize(nc, 64<<10)
		for {
			f, n, err := readFrame(br)
			if err != nil {
				if ctx.Err() == nil {
					if serverClosed(err) {
						t.closed(0)
					} else {
						t.err(err)
					}
				}
				return
			}
			t.answer(&f, n)
			credits <- struct{}{}
		}
	}()
	var buf []byte
	id := uint64(0)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-done:
			break loop
		case <-credits:
		}
		buf = buf[:0]
		k := 1
		id++
		buf = mk(id, buf)
		for k < 32 {
			select {
			case <-credits:
				id++
				buf = mk(id, buf)
				k++
				continue
			default:
			}
			break
		}
		// A server that stops reading (backpressure) is waited for
		// until ctx ends: the rest of the batch is written then.
		rem, err := buf, error(nil)
		for len(rem) > 0 && ctx.Err() == nil {
			_ = nc.SetWriteDeadline(time.Now().Add(250 * time.Millisecond))
			var n int
			n, err = nc.Write(rem)
			rem = rem[n:]
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil
				continue
			}
			if err != nil {
				break
			}
		}
		t.sent(int64(len(buf)-len(rem)), int64(k)) // (frames: those begun)
		if err != nil {
			if !serverClosed(err) {
				t.err(err)
			}
			break
		}
	}
	closeHard(nc)
	<-done
}

// OneShot runs Clients short-lived clients, Conns at a time, until they
// are done or Duration passes: each connects, sends one PUT with a fresh
// random client id (seq 1, floor 1), reads the answer and disconnects.
func OneShot(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults(2*time.Minute, 8)
	if cfg.Clients <= 0 {
		cfg.Clients = 100000
	}
	tg, err := Resolve(ctx, cfg)
	if err != nil {
		return Result{Probe: "one-shot"}, err
	}
	t := newTally("one-shot", tg.Addr)
	key, _, err := findKey(ctx, cfg, tg.Addr, "hostile/one-shot", []byte("v"))
	if err != nil {
		return t.result(), err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < cfg.Conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(cfg.Seed + int64(w)))
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(cfg.Clients) {
					return
				}
				if i%10000 == 0 {
					cfg.logf("one-shot: %d clients", i)
				}
				oneShot(ctx, cfg, tg.Addr, key, rng.Uint64()|1, t)
			}
		}()
	}
	wg.Wait()
	r := t.result()
	r.Notes = append(r.Notes, "each client one PUT of key "+key+" with a fresh client id, seq 1, floor 1")
	return r, nil
}

func oneShot(ctx context.Context, cfg Config, addr, key string, id uint64, t *tally) {
	nc, err := dial(ctx, cfg, addr)
	if err != nil {
		if ctx.Err() == nil {
			t.dialErr(err)
		}
		return
	}
	t.opened()
	defer closeHard(nc)
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := wire.Append(nil, &wire.Frame{Op: wire.OpPut, ID: 1, Client: id, Seq: 1, Floor: 1, Key: []byte(key), Value: []byte("one-shot")})
	n, err := nc.Write(req)
	t.sent(int64(n), 1)
	if err != nil {
		t.err(err)
		return
	}
	f, n, err := readFrame(bufio.NewReader(nc))
	if err != nil {
		t.err(err)
		return
	}
	t.answer(&f, n)
}

// closeHard closes nc with a reset, so that tens of thousands of probe
// connections leave no TIME_WAIT sockets behind.
func closeHard(nc *net.TCPConn) {
	_ = nc.SetLinger(0)
	_ = nc.Close()
}

// merge sums parts into one Result that keeps them as Parts.
func merge(probe, target string, parts []Result) Result {
	r := Result{Probe: probe, Target: target, Statuses: map[string]int64{}, Errors: map[string]int{}, Parts: parts}
	for _, p := range parts {
		r.Elapsed = max(r.Elapsed, p.Elapsed)
		r.Opened += p.Opened
		r.DialErrors += p.DialErrors
		r.ClosedByServer += p.ClosedByServer
		r.MaxCloseAfter = max(r.MaxCloseAfter, p.MaxCloseAfter)
		r.Requests += p.Requests
		r.Answers += p.Answers
		r.Sent += p.Sent
		r.Received += p.Received
		for k, v := range p.Statuses {
			r.Statuses[k] += v
		}
		for k, v := range p.Errors {
			r.Errors[k] += v
		}
	}
	return r
}
