package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"ftkv/client"
	"ftkv/status"
)

// memStore is an in-memory Store with the cluster's semantics; fail, when
// set, is returned by every call.
type memStore struct {
	mu   sync.Mutex
	m    map[string][]byte
	fail error
	// largestBatch is the most operations one Batch call carried.
	largestBatch atomic.Int64
	// gate, when set, holds every Batch until it is closed (a cluster
	// that does not answer for a while).
	gate chan struct{}
	// putGate, when set, holds every Put likewise.
	putGate chan struct{}
	// perMiB, when set, is how long a value of 1 MiB takes to come back
	// over the one link every fetch shares (values of 64 KiB and more;
	// they wait for the link in turn, as over the connections of the
	// gateway's client); fetching counts the bytes of those values asked
	// for and not yet returned, fetchPeak its most.
	perMiB    time.Duration
	link      sync.Mutex
	fetching  atomic.Int64
	fetchPeak atomic.Int64
	// casCurrent counts the bytes of current values compare-and-swaps
	// brought back on a mismatch (each left a record of that size on a
	// real server).
	casCurrent atomic.Int64
	// readers, when set with allRead, holds the first readers Gets, once
	// they have read, until that many have: requests that all read
	// before any of them writes.
	readers int64
	arrived atomic.Int64
	allRead chan struct{}
}

// transfer models the return of value v over the shared link (perMiB).
func (s *memStore) transfer(v []byte) {
	if s.perMiB == 0 || len(v) < 64<<10 {
		return
	}
	n := s.fetching.Add(int64(len(v)))
	for cur := s.fetchPeak.Load(); n > cur && !s.fetchPeak.CompareAndSwap(cur, n); cur = s.fetchPeak.Load() {
	}
	s.link.Lock()
	time.Sleep(time.Duration(int64(s.perMiB) * int64(len(v)) >> 20))
	s.link.Unlock()
	s.fetching.Add(-int64(len(v)))
}

func newMemStore() *memStore { return &memStore{m: map[string][]byte{}} }

func (s *memStore) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *memStore) Get(ctx context.Context, key string) ([]byte, error) {
	return s.get(key, 0)
}

// get is Get, whose value comes back only if it is at most limit bytes
// (limit > 0: a server answers a larger one with its size alone).
func (s *memStore) get(key string, limit int) ([]byte, error) {
	s.mu.Lock()
	fail := s.fail
	v, ok := s.m[key]
	s.mu.Unlock()
	if s.readers > 0 {
		n := s.arrived.Add(1)
		if n == s.readers {
			close(s.allRead)
		}
		if n <= s.readers {
			<-s.allRead
		}
	}
	if fail != nil {
		return nil, fail
	}
	if !ok {
		return nil, client.ErrNotFound
	}
	if limit > 0 && len(v) > limit {
		return nil, fmt.Errorf("%w: value of %d bytes is over the cap", client.ErrTooLarge, len(v))
	}
	v = bytes.Clone(v)
	s.transfer(v)
	return v, nil
}

func (s *memStore) Put(ctx context.Context, key string, value []byte) error {
	if s.putGate != nil {
		select {
		case <-s.putGate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.m[key] = bytes.Clone(value)
	return nil
}

func (s *memStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.m, key)
	return nil
}

func (s *memStore) Append(ctx context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.m[key] = append(bytes.Clone(s.m[key]), value...)
	return nil
}

// CompareAndSwap brings back no current value.
func (s *memStore) CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	swapped, _, err := s.casLocked(key, old, new)
	return swapped, err
}

func (s *memStore) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return false, s.fail
	}
	cur, ok := s.m[key]
	if old == nil && !ok || old != nil && ok && bytes.Equal(cur, old) {
		delete(s.m, key)
		return true, nil
	}
	return false, nil
}

func (s *memStore) CompareAndSwapCurrent(ctx context.Context, key string, old, new []byte) (bool, []byte, error) {
	s.mu.Lock()
	swapped, cur, err := s.casLocked(key, old, new)
	s.mu.Unlock()
	if cur != nil {
		s.casCurrent.Add(int64(len(cur)))
		s.transfer(cur) // the current value comes back over the link, as a Get's does
	}
	return swapped, cur, err
}

// casLocked swaps with s.mu held; on a mismatch it returns a copy of the
// current value (nil when absent).
func (s *memStore) casLocked(key string, old, new []byte) (bool, []byte, error) {
	if s.fail != nil {
		return false, nil, s.fail
	}
	cur, ok := s.m[key]
	if old == nil && !ok || old != nil && ok && bytes.Equal(cur, old) {
		s.m[key] = bytes.Clone(new)
		return true, nil, nil
	}
	if !ok {
		return false, nil, nil
	}
	return false, append([]byte{}, cur...), nil
}

func (s *memStore) Batch(ctx context.Context, ops []client.BatchOp) error {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for n := int64(len(ops)); ; {
		if cur := s.largestBatch.Load(); n <= cur || s.largestBatch.CompareAndSwap(cur, n) {
			break
		}
	}
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case client.BatchGet:
			v, err := s.get(op.Key, op.MaxValue)
			op.Value, op.Found = v, err == nil
			if err != nil && !errors.Is(err, client.ErrNotFound) {
				op.Err = err
			}
		case client.BatchPut:
			op.Err = s.Put(ctx, op.Key, op.Value)
		case client.BatchDelete:
			op.Err = s.Delete(ctx, op.Key)
		}
	}
	return nil
}

func (s *memStore) Status(ctx context.Context) (*status.Cluster, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	return &status.Cluster{Epoch: 7, Servers: []status.Server{{ID: 0, Addr: "127.0.0.1:1", State: "serving",
		PrimaryKeys: uint64(len(s.m))}}, Shards: []status.Shard{{Shard: 0, Primary: 0, Secondary: -1, State: "serving"}}}, nil
}
