package server

import (
	"encoding/binary"
	"unsafe"
)

// A rec (record) is one stored key with its value and version, in a single
// allocation that holds no pointers (the collector never scans it):
//
//	version (8) | value length (4) | key length (4) | key | value
//
// Records are immutable once in a table: a write stores a new rec.
type rec []byte

const recHeader = 16

// makeRec lays key and value out as an rec (version 0).
func makeRec(key, value []byte) rec {
	e := make(rec, recHeader+len(key)+len(value))
	binary.LittleEndian.PutUint32(e[8:], uint32(len(value)))
	binary.LittleEndian.PutUint32(e[12:], uint32(len(key)))
	copy(e[recHeader:], key)
	copy(e[recHeader+len(key):], value)
	return e
}

func makeRecString(key string, value []byte) rec {
	return makeRec(unsafe.Slice(unsafe.StringData(key), len(key)), value)
}

func (e rec) ptr() unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(e)) }

func (e rec) setVersion(v uint64) { binary.LittleEndian.PutUint64(e, v) }

// The accessors read the header through a pointer: a table keeps only the
// pointer to an rec's first byte.
func recAt(p unsafe.Pointer) rec {
	vl := *(*uint32)(unsafe.Add(p, 8))
	kl := *(*uint32)(unsafe.Add(p, 12))
	return unsafe.Slice((*byte)(p), recHeader+int(kl)+int(vl))
}

func (e rec) version() uint64 { return binary.LittleEndian.Uint64(e) }
func (e rec) keyLen() int     { return int(binary.LittleEndian.Uint32(e[12:])) }

// key aliases the rec (valid as long as the rec is).
func (e rec) key() string {
	return unsafe.String(unsafe.SliceData(e[recHeader:]), e.keyLen())
}

func (e rec) keyBytes() []byte { return e[recHeader : recHeader+e.keyLen()] }

// value aliases the rec; nobody writes it again.
func (e rec) value() []byte { return e[recHeader+e.keyLen():] }

// kvmap is a hash map from key to rec: open addressing with linear
// probing over an array of pointers, plus one byte of the hash per slot so
// that most probes never touch an rec. A slot costs 9 bytes where a Go
// map[string]struct{...} slot costs 40 and more; deletes shift the
// following run back (no tombstones).
type kvmap struct {
	slots []unsafe.Pointer // an rec's first byte, or nil
	tags  []uint8          // tag(hash) of the slot's key; 0 when empty
	n     int
}

const kvmapMin = 8

func tag(h uint64) uint8 { return uint8(h>>32) | 1 }

// find returns the slot of key, or (the first empty slot, false).
func (m *kvmap) find(key []byte, h uint64) (int, bool) {
	if len(m.slots) == 0 {
		return -1, false
	}
	mask := len(m.slots) - 1
	t := tag(h)
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch m.tags[i] {
		case 0:
			return i, false
		case t:
			if string(recAt(m.slots[i]).keyBytes()) == string(key) {
				return i, true
			}
		}
	}
}

func (m *kvmap) get(key []byte, h uint64) (rec, bool) {
	i, ok := m.find(key, h)
	if !ok {
		return nil, false
	}
	return recAt(m.slots[i]), true
}

// put stores e under its key (h is the key's hash), replacing any rec
// there; it reports whether the key is new.
func (m *kvmap) put(e rec, h uint64) bool {
	i, found := m.slot(e.keyBytes(), h)
	m.store(i, e, h)
	return !found
}

// slot is find for a caller that may store next: it first makes room for
// one more entry, so an empty slot it returns stays valid for store.
func (m *kvmap) slot(key []byte, h uint64) (int, bool) {
	if (m.n+1)*8 > len(m.slots)*7 {
		m.grow(max(2*len(m.slots), kvmapMin))
	}
	return m.find(key, h)
}

// at is the rec in slot i (a slot find or slot reported full).
func (m *kvmap) at(i int) rec { return recAt(m.slots[i]) }

// store puts e into slot i, which slot returned for e's key.
func (m *kvmap) store(i int, e rec, h uint64) {
	if m.tags[i] == 0 {
		m.tags[i] = tag(h)
		m.n++
	}
	m.slots[i] = e.ptr()
}

// removeAt empties slot i, which holds a rec.
func (m *kvmap) removeAt(i int) {
	mask := len(m.slots) - 1
	// Backward-shift: move later members of the probe run into the hole
	// when their home slot does not lie (cyclically) after the hole.
	for j := (i + 1) & mask; m.tags[j] != 0; j = (j + 1) & mask {
		home := int(hashKey(recAt(m.slots[j]).keyBytes())) & mask
		if (j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j)) {
			m.slots[i], m.tags[i] = m.slots[j], m.tags[j]
			i = j
		}
	}
	m.slots[i], m.tags[i] = nil, 0
	m.n--
}

// reserve sizes the map for n entries.
func (m *kvmap) reserve(n int) {
	size := kvmapMin
	for size*7 < n*8 {
		size *= 2
	}
	if size > len(m.slots) {
		m.grow(size)
	}
}

func (m *kvmap) grow(size int) {
	old, oldTags := m.slots, m.tags
	m.slots = make([]unsafe.Pointer, size)
	m.tags = make([]uint8, size)
	mask := size - 1
	for j, p := range old {
		if oldTags[j] == 0 {
			continue
		}
		h := hashKey(recAt(p).keyBytes())
		i := int(h) & mask
		for m.tags[i] != 0 {
			i = (i + 1) & mask
		}
		m.slots[i], m.tags[i] = p, oldTags[j]
	}
}

// each calls fn for every rec until fn returns false.
func (m *kvmap) each(fn func(e rec) bool) {
	for i, p := range m.slots {
		if m.tags[i] != 0 && !fn(recAt(p)) {
			return
		}
	}
}
