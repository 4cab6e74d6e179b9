package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"ftkv/wire"
)

// holdingServer accepts one connection, reads requests until it holds
// want of them, waits for a token on release, then answers them all in a
// random order (value = key); and again for the next want.
type holdingServer struct {
	addr    string
	nc      chan net.Conn
	release chan struct{}
}

func startHolding(t *testing.T, want int, seed uint64) *holdingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h := &holdingServer{addr: ln.Addr().String(), nc: make(chan net.Conn, 1), release: make(chan struct{}, 1)}
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		h.nc <- nc
		rng := rand.New(rand.NewPCG(seed, 1))
		var out []byte
		var held []wire.Frame
		readFrames(nc, func(f wire.Frame) bool {
			f.Key = append([]byte(nil), f.Key...)
			held = append(held, f)
			return true
		}, func() bool {
			if len(held) < want {
				return true
			}
			<-h.release
			rng.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
			out = out[:0]
			for _, f := range held {
				out = wire.Append(out, &wire.Frame{Op: f.Op, Status: wire.StatusOK, ID: f.ID, Value: f.Key})
			}
			held = held[:0]
			_, err := nc.Write(out)
			return err == nil
		})
	}()
	return h
}

// TestConnOutOfOrderAnswers: more requests in flight on one connection
// than it has slots (the overflow map), answered in a random order, some
// canceled by their callers before the answer: every caller gets its own
// answer or its context's error, never another's, and the connection
// keeps working afterwards (canceled and answered calls free their slots).
func TestConnOutOfOrderAnswers(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	const n = slotCount + 700
	h := startHolding(t, n, seed)
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	cn := newConn(nc, h.addr)
	defer cn.fail(ErrClosed)

	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		canceledReady := make(chan struct{}) // every canceled caller has its error
		var canceledWG sync.WaitGroup
		for i := range n {
			cancelIt := i%9 == 0 && round < 2
			wg.Add(1)
			if cancelIt {
				canceledWG.Add(1)
			}
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if cancelIt {
					// Canceled while the server holds every answer.
					time.AfterFunc(time.Millisecond, cancel)
				}
				key := fmt.Sprintf("r%d:%d", round, i)
				reply, err := cn.roundTrip(ctx, &wire.Frame{Op: wire.OpGet, Key: []byte(key)})
				if cancelIt {
					canceledWG.Done()
					if !errors.Is(err, context.Canceled) {
						errs <- fmt.Errorf("canceled %s: got %q, %v", key, reply.Value, err)
					}
					return
				}
				if err != nil || string(reply.Value) != key {
					errs <- fmt.Errorf("%s: got %q, %v", key, reply.Value, err)
				}
			}()
		}
		go func() { canceledWG.Wait(); close(canceledReady) }()
		<-canceledReady
		h.release <- struct{}{}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		cn.mu.Lock()
		left := len(cn.overflow)
		cn.mu.Unlock()
		for i := range cn.slots {
			if cn.slots[i].Load() != nil {
				left++
			}
		}
		if left != 0 || cn.overflowN.Load() != 0 {
			t.Fatalf("round %d: %d calls still registered (overflow count %d)", round, left, cn.overflowN.Load())
		}
	}
}

// TestConnFailWakesEveryCaller: a connection that breaks with requests in
// flight (in slots and in the overflow map) fails every one of them with
// errConnBroken, and refuses new ones.
func TestConnFailWakesEveryCaller(t *testing.T) {
	const n = slotCount + 300
	h := startHolding(t, 1<<30, 1) // never answers
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	cn := newConn(nc, h.addr)
	sc := <-h.nc
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := cn.roundTrip(context.Background(), &wire.Frame{Op: wire.OpGet, Key: fmt.Appendf(nil, "k%d", i)})
			errs <- err
		}()
	}
	for {
		cn.mu.Lock()
		sent := cn.nextID
		cn.mu.Unlock()
		if sent == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	sc.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, errConnBroken) {
			t.Fatalf("a caller got %v, want errConnBroken", err)
		}
	}
	if _, err := cn.roundTrip(context.Background(), &wire.Frame{Op: wire.OpGet, Key: []byte("after")}); !errors.Is(err, errConnBroken) {
		t.Fatalf("a request on the broken connection: %v", err)
	}
}

// TestConnOverdue: a connection is overdue once a request has waited a
// whole window (from the first look that saw it) with nothing arriving;
// answers end the window, and an idle connection is never overdue.
func TestConnOverdue(t *testing.T) {
	h := startHolding(t, 2, 1)
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	cn := newConn(nc, h.addr)
	defer cn.fail(ErrClosed)
	for cn.reads.Load() == 0 { // the reader waits for its first bytes
		time.Sleep(time.Millisecond)
	}
	const d = time.Second
	t0 := time.Now()
	for i, now := range []time.Time{t0, t0.Add(d), t0.Add(3 * d)} {
		if cn.overdue(now, d) {
			t.Fatalf("idle connection overdue at look %d", i)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := cn.roundTrip(ctx, &wire.Frame{Op: wire.OpGet, Key: []byte("a")})
		first <- err
	}()
	waitFor(t, func() bool { return cn.oldestWaiting() == 1 })
	t1 := t0.Add(4 * d)
	for i, now := range []time.Time{t1, t1.Add(d / 2), t1.Add(d - time.Millisecond)} {
		if cn.overdue(now, d) {
			t.Fatalf("overdue at look %d, before a whole window", i)
		}
	}
	if !cn.overdue(t1.Add(d), d) {
		t.Fatal("a request waited a whole window with nothing arriving: not overdue")
	}
	if cn.overdue(t1.Add(3*d/2), d) {
		t.Fatal("overdue again half a window after the last look found it late")
	}
	if !cn.overdue(t1.Add(2*d), d) {
		t.Fatal("still waiting a window later: not overdue")
	}

	// The server answers both requests: no window, not overdue.
	second := make(chan error, 1)
	go func() {
		_, err := cn.roundTrip(ctx, &wire.Frame{Op: wire.OpGet, Key: []byte("b")})
		second <- err
	}()
	waitFor(t, func() bool { cn.mu.Lock(); defer cn.mu.Unlock(); return cn.nextID == 2 })
	h.release <- struct{}{}
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	for i, now := range []time.Time{t1.Add(5 * d), t1.Add(6 * d), t1.Add(8 * d)} {
		if cn.overdue(now, d) {
			t.Fatalf("overdue at look %d after every answer came", i)
		}
	}
	if cn.oldestWaiting() != 0 {
		t.Fatalf("request %d still waiting after every answer came", cn.oldestWaiting())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
	}
}
