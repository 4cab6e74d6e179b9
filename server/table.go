package server

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/zeebo/xxh3"
)

const stripes = 64

// item is a stored value and its version: the index, in its shard's
// replication log, of the write that produced it. Both copies of a shard
// hold the same versions, which makes re-seeding (a snapshot and the live
// stream applied in any order) idempotent.
//
// It is kept small (24 bytes; a slice would take 32) because a table holds
// one per key: the value is a pointer to its first byte and a length. The
// pointer keeps the value's allocation alive; writers store values (and
// keys) that nobody modifies afterwards, usually one allocation holding the
// key's bytes and then the value's, so a key costs one object.
type item struct {
	val  *byte
	vlen uint32
	ver  uint64
}

func mkItem(v []byte, ver uint64) item {
	return item{val: unsafe.SliceData(v), vlen: uint32(len(v)), ver: ver}
}

func (it item) value() []byte { return unsafe.Slice(it.val, it.vlen) }

// table holds one shard's keys. Readers on many event loops take a stripe's
// read lock; writers take its write lock.
type table struct {
	stripes [stripes]stripe
	count   atomic.Int64
}

type stripe struct {
	mu sync.RWMutex
	m  map[string]item
	// tomb remembers deletes while the table is being re-seeded, so a
	// snapshot entry older than the delete is not resurrected.
	tomb map[string]uint64
	_    [16]byte
}

func newTable() *table {
	t := &table{}
	for i := range t.stripes {
		t.stripes[i].m = make(map[string]item)
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
	it, ok := st.m[string(key)]
	st.mu.RUnlock()
	return it.value(), ok
}

// set stores value (which the table now owns) under key at version ver.
func (t *table) set(key string, value []byte, ver uint64) {
	st := t.stripe([]byte(key))
	st.mu.Lock()
	if _, ok := st.m[key]; !ok {
		t.count.Add(1)
	}
	st.m[key] = mkItem(value, ver)
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

// merge applies a write at version ver unless the table already holds a
// newer version of key (or a newer delete, while seeding). value == nil
// with del deletes. It reports whether the write was applied.
func (t *table) merge(key string, value []byte, ver uint64, del, seeding bool) bool {
	st := t.stripe([]byte(key))
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, ok := st.m[key]
	if ok && cur.ver >= ver {
		return false
	}
	if st.tomb != nil {
		if tv, dead := st.tomb[key]; dead && tv >= ver {
			return false
		}
	}
	if del {
		if ok {
			delete(st.m, key)
			t.count.Add(-1)
		}
		if seeding {
			if st.tomb == nil {
				st.tomb = make(map[string]uint64)
			}
			st.tomb[key] = ver
		}
		return true
	}
	if !ok {
		t.count.Add(1)
	}
	st.m[key] = mkItem(value, ver)
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

// clear empties the table (a secondary about to be re-seeded from scratch).
func (t *table) clear() {
	for i := range t.stripes {
		st := &t.stripes[i]
		st.mu.Lock()
		t.count.Add(-int64(len(st.m)))
		st.m = make(map[string]item)
		st.tomb = nil
		st.mu.Unlock()
	}
}

func (t *table) len() int { return int(t.count.Load()) }

// each calls fn for every entry, one stripe at a time under its read lock.
func (t *table) each(fn func(key string, value []byte, ver uint64) error) error {
	for i := range t.stripes {
		st := &t.stripes[i]
		st.mu.RLock()
		for k, it := range st.m {
			if err := fn(k, it.value(), it.ver); err != nil {
				st.mu.RUnlock()
				return err
			}
		}
		st.mu.RUnlock()
	}
	return nil
}

// eachIn calls fn for every entry of stripe i under its read lock.
func (t *table) eachIn(i int, fn func(key string, value []byte, ver uint64)) {
	st := &t.stripes[i]
	st.mu.RLock()
	for k, it := range st.m {
		fn(k, it.value(), it.ver)
	}
	st.mu.RUnlock()
}

// reserve sizes an empty table for about n keys, so loading a snapshot
// does not rehash every stripe many times over.
func (t *table) reserve(n int) {
	if n <= 0 || t.len() > 0 {
		return
	}
	per := n/stripes + 1
	for i := range t.stripes {
		st := &t.stripes[i]
		st.mu.Lock()
		if len(st.m) == 0 {
			st.m = make(map[string]item, per)
		}
		st.mu.Unlock()
	}
}
