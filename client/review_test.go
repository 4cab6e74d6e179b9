package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/wire"
)

// chaosServer answers every request on its connections with a value made
// from the request's key, after a random delay and so in a random order,
// some values empty, some larger than the reader's buffer; it cuts a
// connection now and then with requests in flight.
func startChaos(t *testing.T, seed uint64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Uint64
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			n := conns.Add(1)
			go serveChaos(nc, rand.New(rand.NewPCG(seed, n)))
		}
	}()
	return ln.Addr().String()
}

// chaosValue is the value the chaos server answers for key: empty for keys
// ending in 'e', over 64 KiB for keys ending in 'L', else key three times.
func chaosValue(key []byte) []byte {
	switch key[len(key)-1] {
	case 'e':
		return nil
	case 'L':
		return bytes.Repeat(key, (70<<10)/len(key)+1)
	}
	return bytes.Repeat(key, 3)
}

func serveChaos(nc net.Conn, rng *rand.Rand) {
	defer nc.Close()
	var wmu sync.Mutex
	cutAfter := 200 + rng.IntN(3000) // answers before this connection is cut
	var answered atomic.Int64
	readFrames(nc, func(f wire.Frame) bool {
		key := append([]byte(nil), f.Key...)
		id := f.ID
		delay := time.Duration(rng.IntN(300)) * time.Microsecond
		go func() {
			time.Sleep(delay)
			out := wire.Append(nil, &wire.Frame{Op: wire.OpGet, Status: wire.StatusOK, ID: id, Key: key, Value: chaosValue(key)})
			wmu.Lock()
			_, err := nc.Write(out)
			wmu.Unlock()
			if err == nil && answered.Add(1) == int64(cutAfter) {
				nc.Close()
			}
		}()
		return true
	}, nil)
}

// TestReviewConnChaos: many goroutines share connections to a server that
// answers out of order, after random delays, with empty values and values
// larger than the read buffer, and cuts connections with requests in
// flight; callers cancel at random times, some appending into their own
// buffer. Every caller gets its own answer (never another's), its
// context's error or errConnBroken; no caller hangs; a value returned is
// never changed afterwards (not aliased to the read buffer or a pooled
// call), and a caller's buffer prefix is left as it was.
func TestReviewConnChaos(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	addr := startChaos(t, seed)

	var cmu sync.Mutex
	var cur *conn
	get := func() *conn {
		cmu.Lock()
		defer cmu.Unlock()
		if cur == nil || cur.broken() {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return nil
			}
			cur = newConn(nc, addr)
		}
		return cur
	}
	defer func() {
		cmu.Lock()
		if cur != nil {
			cur.fail(ErrClosed)
		}
		cmu.Unlock()
	}()

	const workers = 64
	dur := 3 * time.Second
	if testing.Short() {
		dur = time.Second
	}
	type kept struct{ key, value []byte }
	var (
		wg                           sync.WaitGroup
		ok, canceled, broken, failed atomic.Int64
	)
	deadline := time.Now().Add(dur)
	keeps := make([][]kept, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)+1000))
			dst := make([]byte, 0, 256)
			for i := 0; time.Now().Before(deadline); i++ {
				cn := get()
				if cn == nil {
					return
				}
				suffix := "x"
				switch rng.IntN(20) {
				case 0:
					suffix = "e"
				case 1:
					suffix = "L"
				}
				key := fmt.Appendf(nil, "w%d:%d:%s", w, i, suffix)
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(4) == 0 {
					time.AfterFunc(time.Duration(rng.IntN(400))*time.Microsecond, cancel)
				}
				var into []byte
				if rng.IntN(2) == 0 {
					into = append(dst[:0], "PFX"...)
				}
				done := make(chan struct{})
				var reply wire.Frame
				var err error
				go func() {
					defer close(done)
					reply, err = cn.roundTripInto(ctx, &wire.Frame{Op: wire.OpGet, Key: key}, into)
				}()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Errorf("a caller hung for 10 s (key %s)", key)
					cancel()
					return
				}
				cancel()
				switch {
				case err == nil:
					want := chaosValue(key)
					got := reply.Value
					if into != nil {
						if !bytes.HasPrefix(got, []byte("PFX")) {
							failed.Add(1)
							t.Errorf("%s: dst prefix lost: %.40q", key, got)
							continue
						}
						got = got[3:]
					}
					if !bytes.Equal(got, want) || !bytes.Equal(reply.Key, key) {
						failed.Add(1)
						t.Errorf("%s: got key %q value %.60q (len %d), want len %d", key, reply.Key, got, len(got), len(want))
						continue
					}
					if into == nil && len(keeps[w]) < 2000 {
						keeps[w] = append(keeps[w], kept{key, reply.Value})
					}
					ok.Add(1)
				case errors.Is(err, context.Canceled):
					canceled.Add(1)
				case errors.Is(err, errConnBroken):
					broken.Add(1)
				default:
					t.Errorf("%s: unexpected error %v", key, err)
				}
			}
		}()
	}
	wg.Wait()
	for w := range keeps {
		for _, k := range keeps[w] {
			if !bytes.Equal(k.value, chaosValue(k.key)) {
				t.Fatalf("the value returned for %s changed afterwards: now %.60q", k.key, k.value)
			}
		}
	}
	if len(noValue) != 0 || cap(noValue) != 0 {
		t.Fatalf("noValue was written into: %q", noValue)
	}
	t.Logf("ok %d, canceled %d, broken %d, wrong %d", ok.Load(), canceled.Load(), broken.Load(), failed.Load())
	if ok.Load() == 0 || canceled.Load() == 0 || broken.Load() == 0 {
		t.Fatalf("the test did not exercise every path: ok %d canceled %d broken %d", ok.Load(), canceled.Load(), broken.Load())
	}
}
