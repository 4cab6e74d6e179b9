package server

import (
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/zeebo/xxh3"
)

const stripes = 64

// table holds one shard's keys. Each key is one record (kvmap.go): its
// value and its version, the index in its shard's replication log of the
// write that produced it. Both copies of a shard hold the same versions,
// which makes re-seeding (a snapshot and the live stream applied in any
// order) idempotent. Readers on many event loops take a stripe's read
// lock; writers take its write lock.
type table struct {
	stripes [stripes]stripe
	count   atomic.Int64
	bytes   atomic.Int64 // the records' bytes (the collector's tuning reads it)
}

type stripe struct {
	mu sync.RWMutex
	m  kvmap
	// tomb remembers deletes while the table is being re-seeded, so a
	// snapshot entry older than the delete is not resurrected.
	tomb  map[string]uint64
	bytes int64 // the records' bytes, for reset
	_     [8]byte
}

func newTable() *table { return &table{} }

func hashKey(key []byte) uint64 { return xxh3.Hash(key) }

func strBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (t *table) stripeOf(h uint64) *stripe { return &t.stripes[h>>58] }

// get returns the value of key. The returned slice is never modified (a
// write stores a new record), so it may be used after the lock is gone.
func (t *table) get(key []byte) ([]byte, bool) {
	h := hashKey(key)
	st := t.stripeOf(h)
	st.mu.RLock()
	r, ok := st.m.get(key, h)
	st.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return r.value(), true
}

// set stores a copy of value under key at version ver.
func (t *table) set(key string, value []byte, ver uint64) {
	r := makeRecString(key, value)
	r.setVersion(ver)
	h := hashKey(strBytes(key))
	st := t.stripeOf(h)
	st.mu.Lock()
	i, found := st.m.slot(strBytes(key), h)
	old := 0
	if found {
		old = len(st.m.at(i))
	} else {
		t.count.Add(1)
	}
	st.m.store(i, r, h)
	st.addBytes(t, len(r)-old)
	st.mu.Unlock()
}

// addBytes counts d more bytes of records in st (held) and its table.
func (st *stripe) addBytes(t *table, d int) {
	st.bytes += int64(d)
	t.bytes.Add(int64(d))
}

// merge applies a write at version ver unless the table already holds a
// newer version of key (or a newer delete, while seeding); del deletes.
// key and value are copied (they may alias a network buffer). It reports
// whether the write was applied.
func (t *table) merge(key string, value []byte, ver uint64, del, seeding bool) bool {
	return t.apply(key, nil, value, ver, del, seeding)
}

// mergeRec is merge for a record the caller built (makeRec) and hands
// over: the table keeps it as it is, without a copy.
func (t *table) mergeRec(r rec, ver uint64, seeding bool) bool {
	return t.apply(r.key(), r, nil, ver, false, seeding)
}

// apply stores r, or a record made of key and value when r is nil.
func (t *table) apply(key string, r rec, value []byte, ver uint64, del, seeding bool) bool {
	kb := strBytes(key)
	h := hashKey(kb)
	st := t.stripeOf(h)
	st.mu.Lock()
	defer st.mu.Unlock()
	i, ok := st.m.slot(kb, h)
	if ok && st.m.at(i).version() >= ver {
		return false
	}
	if st.tomb != nil {
		if tv, dead := st.tomb[key]; dead && tv >= ver {
			return false
		}
	}
	if del {
		if ok {
			st.addBytes(t, -len(st.m.at(i)))
			st.m.removeAt(i)
			t.count.Add(-1)
		}
		if seeding {
			if st.tomb == nil {
				st.tomb = make(map[string]uint64)
			}
			st.tomb[strings.Clone(key)] = ver
		}
		return true
	}
	if r == nil {
		r = makeRec(kb, value)
	}
	r.setVersion(ver)
	old := 0
	if ok {
		old = len(st.m.at(i))
	}
	st.m.store(i, r, h)
	st.addBytes(t, len(r)-old)
	if !ok {
		t.count.Add(1)
	}
	return true
}

// dropTombstones forgets the deletes remembered during re-seeding.
func (t *table) dropTombstones() {
	for i := range t.stripes {
		st := &t.stripes[i]
		st.mu.Lock()
		st.tomb = nil
		st.mu.Unlock()
	}
}

func (t *table) len() int { return int(t.count.Load()) }

// each calls fn for every entry, one stripe at a time under its read lock.
func (t *table) each(fn func(key string, value []byte, ver uint64) error) error {
	var err error
	for i := range t.stripes {
		st := &t.stripes[i]
		st.mu.RLock()
		st.m.each(func(r rec) bool {
			err = fn(r.key(), r.value(), r.version())
			return err == nil
		})
		st.mu.RUnlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// eachIn calls fn for every entry of stripe i under its read lock.
func (t *table) eachIn(i int, fn func(key string, value []byte, ver uint64)) {
	st := &t.stripes[i]
	st.mu.RLock()
	st.m.each(func(r rec) bool {
		fn(r.key(), r.value(), r.version())
		return true
	})
	st.mu.RUnlock()
}

// tombsIn calls fn for every delete stripe i remembers while re-seeding.
func (t *table) tombsIn(i int, fn func(key string, ver uint64)) {
	st := &t.stripes[i]
	st.mu.RLock()
	for k, v := range st.tomb {
		fn(k, v)
	}
	st.mu.RUnlock()
}

// reset empties the table (a full re-seeding starts over).
func (t *table) reset() {
	for i := range t.stripes {
		st := &t.stripes[i]
		st.mu.Lock()
		t.count.Add(-int64(st.m.n))
		st.addBytes(t, -int(st.bytes))
		st.m = kvmap{}
		st.tomb = nil
		st.mu.Unlock()
	}
}

// reserve sizes an empty table for about n keys, so loading a snapshot
// does not grow every stripe many times over.
func (t *table) reserve(n int) {
	if n <= 0 || t.len() > 0 {
		return
	}
	per := n/stripes + n/stripes/8 + 1
	for i := range t.stripes {
		st := &t.stripes[i]
		st.mu.Lock()
		if st.m.n == 0 {
			st.m.reserve(per)
		}
		st.mu.Unlock()
	}
}
