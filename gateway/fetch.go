package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"ftkv/client"
)

// fetchBudget bounds the bytes of the values the gateway's workers fetch
// at once for answers expected to be large (fetches): a connection whose
// answers are large waits its turn for the budget, first come first
// served, holding nothing but its commands meanwhile. Fetches expected to
// take at most smallFetch never wait: a client of small values is not
// held behind large ones. (An attack: 1,000 connections pipelining GETs
// of a 1 MiB value and never reading made the gateway fetch a value per
// connection at once, 1.3 GB of RSS, and an honest GET waited 6-8 s
// behind them on the links to the servers.) Once an answer is written,
// the output limits count it.
const (
	fetchBudget = 16 << 20
	smallFetch  = 64 << 10
)

// fetches is the gateway's fetch budget: the bytes held by fetches under
// way, and the fetches waiting for room, in order.
type fetches struct {
	mu   sync.Mutex
	out  int64
	wait []*fetchWait
}

type fetchWait struct {
	n       int64
	granted chan struct{} // closed once n is counted in out
}

// acquire counts n bytes in the budget, waiting until they fit (or until
// nothing else is out: a fetch larger than the budget goes alone); false,
// with nothing counted, once gone reports that the fetch is not wanted
// any more (its connection or the gateway closed).
func (f *fetches) acquire(n int64, gone func() bool) bool {
	f.mu.Lock()
	if len(f.wait) == 0 && f.fits(n) {
		f.out += n
		f.mu.Unlock()
		return true
	}
	w := &fetchWait{n: n, granted: make(chan struct{})}
	f.wait = append(f.wait, w)
	f.mu.Unlock()
	tick := time.NewTicker(parkMax)
	defer tick.Stop()
	for {
		select {
		case <-w.granted:
			return true
		case <-tick.C:
			if !gone() {
				continue
			}
			f.mu.Lock()
			select {
			case <-w.granted: // (granted meanwhile: given back)
				f.out -= n
			default:
				for i, x := range f.wait {
					if x == w {
						f.wait = append(f.wait[:i], f.wait[i+1:]...)
						break
					}
				}
			}
			f.grantLocked()
			f.mu.Unlock()
			return false
		}
	}
}

// release gives back n bytes acquired.
func (f *fetches) release(n int64) {
	f.mu.Lock()
	f.out -= n
	f.grantLocked()
	f.mu.Unlock()
}

func (f *fetches) fits(n int64) bool { return f.out == 0 || f.out+n <= fetchBudget }

// grantLocked lets the waiting fetches go, in order, while they fit.
func (f *fetches) grantLocked() {
	for len(f.wait) > 0 && f.fits(f.wait[0].n) {
		w := f.wait[0]
		f.out += w.n
		close(w.granted)
		f.wait[0] = nil
		f.wait = f.wait[1:]
	}
	if len(f.wait) == 0 {
		f.wait = nil
	}
}

// hold takes n bytes of the fetch budget for the session's next fetch,
// if n is over smallFetch (then unhold gives them back); false if the
// connection or the gateway closed while it waited.
func (s *session) hold(n int) bool {
	if n <= smallFetch {
		return true
	}
	return s.g.fetches.acquire(int64(n), s.gone)
}

// unhold gives back what hold(n) took.
func (s *session) unhold(n int) {
	if n > smallFetch {
		s.g.fetches.release(int64(n))
	}
}

// gone reports whether the session's running command is given up: its
// connection was closed by the gateway, or by its client and the command
// only reads, or the gateway stops.
func (s *session) gone() bool {
	return s.stop.Load() || s.closed.Load() && s.reading.Load() || s.g.ctx.Err() != nil
}

// errGone: a command given up because its connection closed.
var errGone = errors.New("connection closed")

// gets counts the GETs of q.
func gets(q []command) int {
	n := 0
	for i := range q {
		if len(q[i].args) == 2 {
			n++
		}
	}
	return n
}

// batchCap is the cap of each of n GETs batched together, and what their
// answers may take in all (held against the fetch budget when over
// smallFetch). While the estimate keeps them within smallFetch they share
// it, each capped at its share (at least the estimate): a batch that
// never waits for the budget never fetches more. Else each is capped at
// getCap. (Counted at the estimate alone, a new connection's 64 GETs
// weighed 4 KB and fetched up to 1 MiB: 300 of them fetched 120 MiB at
// once, TestNewPipelinesFetchWithinTheBudget.)
func (s *session) batchCap(n int) (each, all int) {
	if n == 0 {
		return s.getCap(), 0
	}
	if n*s.getEst <= smallFetch {
		return smallFetch / n, smallFetch
	}
	return s.getCap(), n * s.getCap()
}

// fetch returns key's value (found: present; an empty value is
// non-nil). It is fetched with a cap while the session's estimate is
// small; otherwise, or once the value proved larger, within the fetch
// budget.
func (s *session) fetch(ctx context.Context, key []byte) (v []byte, found bool, err error) {
	if s.getEst <= smallFetch {
		// (A fetch alone of up to smallFetch never waits: capped at
		// that, not at the batches' getCap, or a value between the
		// two went to the budget's queue.)
		ops := []client.BatchOp{{Kind: client.BatchGet, Key: string(key), MaxValue: smallFetch - 16}}
		err := s.g.cfg.Store.Batch(ctx, ops)
		if err == nil {
			err = ops[0].Err
		}
		if !errors.Is(err, client.ErrTooLarge) {
			return valueRead(ops[0].Value, ops[0].Found, err)
		}
		s.getEst = maxValue + 16
	}
	w := s.getEst
	if !s.hold(w) {
		return nil, false, errGone
	}
	v, err = s.g.cfg.Store.Get(ctx, string(key))
	s.unhold(w)
	if err == nil {
		s.learnGet(len(v) + 16)
	}
	if errors.Is(err, client.ErrNotFound) {
		return nil, false, nil
	}
	return valueRead(v, err == nil, err)
}

// valueRead normalises a value read: found with a non-nil value, or not
// found with none; an error alone.
func valueRead(v []byte, ok bool, err error) ([]byte, bool, error) {
	switch {
	case err != nil:
		return nil, false, err
	case !ok:
		return nil, false, nil
	case v == nil:
		return []byte{}, true, nil
	}
	return v, true, nil
}

// cas swaps key from old to new (old nil: only if absent) and, on a
// mismatch, reads the current value as a GET does, within the fetch
// budget (found false: the key was absent at that read). The swap asks
// for no current value: its answer came outside the budget (a new
// connection's estimate is 64 bytes; 100 new connections' SET k v NX GET
// of a 1 MiB key fetched 51 MiB at once, TestSetNXGetFetchesWithinTheBudget),
// and each such mismatch left a record of its value on the server (16
// MiB of them refused every write of the gateway's client there). The
// read is a second round trip, on a mismatch only; a command that goes
// on from the value read (swapLoop) compares against it, and one that
// answers it answers a read at which the key held it.
func (s *session) cas(ctx context.Context, key []byte, old, new []byte) (done bool, cur []byte, found bool, err error) {
	done, err = s.g.cfg.Store.CompareAndSwap(ctx, string(key), old, new)
	if err != nil || done {
		return done, nil, false, err
	}
	cur, found, err = s.fetch(ctx, key)
	return false, cur, found, err
}
