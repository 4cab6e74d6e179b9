package server

import (
	"sync"
	"sync/atomic"

	"github.com/zeebo/xxh3"
)

const stripes = 64

// table holds one shard's keys. Readers on many event loops take a stripe's
// read lock; the shard's single writer (the commit path on a primary, the
// replication link on a secondary) takes its write lock.
type table struct {
	stripes [stripes]stripe
	count   atomic.Int64
}

type stripe struct {
	mu sync.RWMutex
	m  map[string][]byte
	_  [24]byte // keep stripes on separate cache lines
}

func newTable() *table {
	t := &table{}
	for i := range t.stripes {
		t.stripes[i].m = make(map[string][]byte)
	}
	return t
}

func (t *table) stripe(key []byte) *stripe {
	return &t.stripes[xxh3.Hash(key)>>58]
}

// get returns the value of key. The returned slice is never modified in
// place (writers replace values), so it may be used after the lock is gone.
func (t *table) get(key []byte) ([]byte, bool) {
	st := t.stripe(key)
	st.mu.RLock()
	v, ok := st.m[string(key)]
	st.mu.RUnlock()
	return v, ok
}

// set stores value (which the table now owns) under key.
func (t *table) set(key string, value []byte) {
	st := t.stripe([]byte(key))
	st.mu.Lock()
	if _, ok := st.m[key]; !ok {
		t.count.Add(1)
	}
	st.m[key] = value
	st.mu.Unlock()
}

func (t *table) del(key string) {
	st := t.stripe([]byte(key))
	st.mu.Lock()
	if _, ok := st.m[key]; ok {
		delete(st.m, key)
		t.count.Add(-1)
	}
	st.mu.Unlock()
}

func (t *table) len() int { return int(t.count.Load()) }

// each calls fn for every entry, one stripe at a time under its read lock.
func (t *table) each(fn func(key string, value []byte) error) error {
	for i := range t.stripes {
		st := &t.stripes[i]
		st.mu.RLock()
		for k, v := range st.m {
			if err := fn(k, v); err != nil {
				st.mu.RUnlock()
				return err
			}
		}
		st.mu.RUnlock()
	}
	return nil
}
