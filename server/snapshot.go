package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"ftkv/internal/wal"
	"ftkv/wire"
)

// Snapshots bound the write-ahead log: once the log outgrows both
// Config.SnapshotBytes and the last snapshot, the server writes every
// table it holds (with versions, the deletes a re-seeding remembers and
// the client sessions) to a snapshot file and removes the log segments the
// snapshot covers. Disk use stays below about twice the larger of the two,
// plus a segment. Recovery is the latest snapshot, then the log after it.
//
// A snapshot never stops writes. It starts a new log segment (wal.Rotate
// returns once every earlier record is in the tables: a secondary applies
// before it logs, a primary applies in the log's callback), then reads the
// tables one stripe at a time under the stripe's read lock, as a
// re-seeding does. Writes that land meanwhile may or may not be in it; the
// log after the new segment has them all, and per-key versions make
// replaying them over the snapshot idempotent.
//
// File DataDir/snapshot-<segment, 16 hex digits> (integers big-endian), a
// versioned successor of the dump format:
//
//	8 "FTKVSNAP", 4 version (1), 8 first log segment not covered
//	sections: 1 kind, 4 shard, 4 body length, body
//	  'S' a shard: 8 base (every log index up to it is in the entries),
//	      8 logged (highest index logged), 8 high water, 8 keys
//	  'E' entries of that shard: seed entries (key, value, version)
//	  'T' deletes remembered while re-seeding: seed entries, values empty
//	  'D' client session records (one DEDUP seed chunk)
//	  'Z' the end (empty)
//	4 CRC-32C of everything before
//
// It is written to a temporary file, synced and renamed, so a snapshot
// file is whole or absent. A damaged one (the disk's fault) loses the
// copies it held, since the segments it covers are gone: it and the log
// are set aside (damaged-<time>) and the server starts with no copy, to
// be re-seeded (openDurable).
const (
	snapMagic   = "FTKVSNAP"
	snapVersion = 1
	snapPrefix  = "snapshot-"
	snapChunk   = 1 << 20 // bytes of entries per section, about
)

// snapshotCheck is how often the log's size is compared with the
// threshold (a mutex read). timing: exception — not a failure-related duration.
const snapshotCheck = 100 * time.Millisecond

// snapStats describes one snapshot.
type snapStats struct {
	segment uint64
	keys    int
	bytes   int64
	took    time.Duration
}

// snapshotLoop takes a snapshot whenever the log outgrows the threshold.
func (s *Server) snapshotLoop(ctx context.Context) {
	d := s.dur
	min := s.cfg.SnapshotBytes
	if min < 0 {
		return
	}
	t := time.NewTicker(snapshotCheck)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-t.C:
		}
		if d.log.Err() != nil || s.closing.Load() {
			continue
		}
		d.mu.Lock()
		last := d.snapBytes
		d.mu.Unlock()
		// A snapshot does not record a re-seeding under way: it waits
		// until the log holds the re-seeding's end.
		if d.log.Size() < max(min, last) || d.anyPartial() {
			continue
		}
		st, err := s.snapshot()
		if errors.Is(err, errReseeding) {
			continue // taken once the log holds the re-seeding's end
		}
		if err != nil {
			if err.Error() != lastErr {
				s.log.Error().Err(err).Msg("snapshot failed; the log keeps growing")
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
		s.log.Info().Uint64("segment", st.segment).Int("keys", st.keys).Int64("bytes", st.bytes).
			Float64("took_ms", float64(st.took.Microseconds())/1000).Int64("log_bytes", d.log.Size()).Msg("snapshot written")
	}
}

// snapshotBeforeRotate, when set (tests only), runs between the snapshot's
// reading of the logged indexes and its rotation of the log.
var snapshotBeforeRotate func()

// errReseeding: no snapshot while a copy is being re-seeded.
var errReseeding = errors.New("a re-seeding is under way: no snapshot until it ends")

// snapshot writes a snapshot of every table and removes the log segments
// it covers. One runs at a time.
func (s *Server) snapshot() (snapStats, error) {
	d := s.dur
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	start := time.Now()
	if snapshotBeforeRotate != nil {
		snapshotBeforeRotate()
	}
	// base: the indexes logged at the rotation itself, every record of
	// the segments this snapshot covers (all reflected in the tables once
	// Rotate returns). Read before the call, a write logged between the
	// read and the rotation was in the snapshot's table above its base,
	// with no record after it: recovered, the copy was taken for a
	// snapshot ahead of its log and re-seeded, never chosen (a shard led
	// alone came back unavailable; TestReviewSnapshotWriteBeforeRotation).
	// Read after it, records of the new segment would count as in the
	// tables, and replay skips records at or below base.
	var base map[int]uint64
	seg, err := d.log.RotateAt(func() { base = d.loggedCopy() })
	if err != nil {
		return snapStats{}, err
	}
	if d.anyPartial() {
		// A re-seeding began before the rotation: its reset is in the
		// segments this snapshot would cover, and the table it would
		// hold is neither the old copy nor the new one.
		return snapStats{}, errReseeding
	}
	logged := d.loggedCopy()
	s.hwMu.Lock()
	high := make(map[int]uint64, len(s.highWater))
	for sh, v := range s.highWater {
		high[sh] = v
	}
	s.hwMu.Unlock()
	s.mu.Lock()
	tables := make(map[int]*table, len(s.tables))
	for sh, t := range s.tables {
		tables[sh] = t
	}
	s.mu.Unlock()

	dir := s.cfg.DataDir
	path := filepath.Join(dir, fmt.Sprintf("%s%016x", snapPrefix, seg))
	st := snapStats{segment: seg}
	n, err := writeSnapshot(path, seg, tables, base, logged, high, s.dd.snapshotBy(), &st.keys)
	if err != nil {
		return st, err
	}
	st.bytes = n
	if err := (wal.OSFS{}).SyncDir(dir); err != nil {
		return st, err
	}
	// The snapshot is durable: what it covers can go.
	if err := d.log.RemoveBefore(seg); err != nil {
		return st, err
	}
	if err := removeSnapshotsBefore(dir, seg); err != nil {
		return st, err
	}
	d.mu.Lock()
	d.snapBytes = n
	d.snapSeg = seg
	d.snapAt = time.Now()
	d.mu.Unlock()
	st.took = time.Since(start)
	return st, nil
}

// snapWriter writes sections and keeps the checksum of all it wrote.
type snapWriter struct {
	w      *bufio.Writer
	f      *os.File
	crc    uint32
	n      int64
	synced int64
	err    error
	hdr    [9]byte
}

// snapSyncEvery: the file is synced every so many bytes as it is written
// (as Redis's rdb-save-incremental-fsync), so the kernel never holds a
// whole snapshot of dirty pages whose one flush would queue the log's
// fsyncs, and so the acknowledged writes, behind it.
const snapSyncEvery = 4 << 20

func (w *snapWriter) write(b []byte) {
	if w.err != nil {
		return
	}
	w.crc = crc32.Update(w.crc, castagnoli, b)
	var k int
	k, w.err = w.w.Write(b)
	w.n += int64(k)
	if w.err == nil && w.n-w.synced >= snapSyncEvery {
		if w.err = w.w.Flush(); w.err == nil {
			w.err = w.f.Sync()
		}
		w.synced = w.n
	}
}

func (w *snapWriter) section(kind byte, shard int, body []byte) {
	w.hdr[0] = kind
	binary.BigEndian.PutUint32(w.hdr[1:], uint32(shard))
	binary.BigEndian.PutUint32(w.hdr[5:], uint32(len(body)))
	w.write(w.hdr[:])
	w.write(body)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// writeSnapshot writes the snapshot file at path (temp file, sync,
// rename) and returns its size; keys gets the number of entries written.
func writeSnapshot(path string, seg uint64, tables map[int]*table, base, logged, high map[int]uint64,
	sessions map[uint32][][]byte, keys *int) (int64, error) {
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // (one an older version left keeps its mode through O_TRUNC)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, wal.FileMode)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (int64, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("snapshot %s: %w", filepath.Base(path), err)
	}
	w := &snapWriter{w: bufio.NewWriterSize(f, 1<<20), f: f}
	var hdr [20]byte
	copy(hdr[:], snapMagic)
	binary.BigEndian.PutUint32(hdr[8:], snapVersion)
	binary.BigEndian.PutUint64(hdr[12:], seg)
	w.write(hdr[:])
	shards := make([]int, 0, len(tables))
	for sh := range tables {
		shards = append(shards, sh)
	}
	sort.Ints(shards)
	var buf []byte
	var chunks [][]byte
	for _, sh := range shards {
		t := tables[sh]
		var head [32]byte
		binary.BigEndian.PutUint64(head[0:], base[sh])
		binary.BigEndian.PutUint64(head[8:], logged[sh])
		binary.BigEndian.PutUint64(head[16:], high[sh])
		binary.BigEndian.PutUint64(head[24:], uint64(t.len()))
		w.section('S', sh, head[:])
		for i := 0; i < stripes; i++ {
			// Encoded under the stripe's read lock, written without it:
			// the disk never holds up that stripe's writers.
			chunks = chunks[:0]
			t.eachIn(i, func(k string, v []byte, ver uint64) {
				buf = wire.AppendSeedEntryString(buf, k, v, ver)
				*keys++
				if len(buf) >= snapChunk {
					chunks = append(chunks, buf)
					buf = nil
				}
			})
			var tombs []byte
			t.tombsIn(i, func(k string, ver uint64) {
				tombs = wire.AppendSeedEntryString(tombs, k, nil, ver)
			})
			if len(tombs) > 0 {
				w.section('T', sh, tombs)
			}
			for _, c := range chunks {
				w.section('E', sh, c)
			}
			if len(buf) >= snapChunk/4 || i == stripes-1 {
				if len(buf) > 0 {
					w.section('E', sh, buf)
				}
				buf = buf[:0]
			}
		}
	}
	// Sessions by origin, 0 first: its expired marks are restored before
	// any record (as one stream has them, stripe by stripe).
	origins := make([]uint32, 0, len(sessions))
	for o := range sessions {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	for _, o := range origins {
		for _, c := range sessions[o] {
			if len(c) > 0 {
				w.section('D', int(o), c)
			}
		}
	}
	w.section('Z', 0, nil)
	if w.err != nil {
		return fail(w.err)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], w.crc)
	if _, err := w.w.Write(sum[:]); err != nil {
		return fail(err)
	}
	if err := w.w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return 0, err
	}
	return w.n + 4, nil
}

// snapshots lists the snapshot files of dir by segment, oldest first.
func snapshots(dir string) ([]uint64, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []uint64
	for _, e := range es {
		name, ok := strings.CutPrefix(e.Name(), snapPrefix)
		if !ok || strings.HasSuffix(name, ".tmp") {
			continue
		}
		if seg, err := strconv.ParseUint(name, 16, 64); err == nil {
			segs = append(segs, seg)
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	return segs, nil
}

// removeSnapshotsBefore removes the snapshots older than seg and any
// temporary file a crash left behind.
func removeSnapshotsBefore(dir string, seg uint64) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range es {
		name, ok := strings.CutPrefix(e.Name(), snapPrefix)
		if !ok {
			continue
		}
		old := strings.HasSuffix(name, ".tmp")
		if n, err := strconv.ParseUint(name, 16, 64); err == nil && n < seg {
			old = true
		}
		if old {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// errSnapshotDamaged: the latest snapshot fails its checks; the log
// segments it covers are gone, so the copies it held are lost here
// (openDurable sets it aside with the log and starts with none).
var errSnapshotDamaged = errors.New("the log segments it covers are gone")

// setAsideDamaged moves the snapshots and the log of dir into a new
// directory dir/damaged-<time> and returns its path: what an operator may
// want to look at, out of the way of a server that starts with no copy.
func setAsideDamaged(dir string) (string, error) {
	aside := filepath.Join(dir, "damaged-"+time.Now().UTC().Format("20060102T150405.000000000"))
	if err := os.Mkdir(aside, wal.DirMode); err != nil {
		return "", err
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range es {
		if e.Name() == "wal" || strings.HasPrefix(e.Name(), snapPrefix) {
			if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(aside, e.Name())); err != nil {
				return "", err
			}
		}
	}
	return aside, wal.OSFS{}.SyncDir(dir)
}

// loadSnapshot loads the latest snapshot of dir into secs (recovery
// state, by shard) and returns the first log segment it does not cover
// (0: there is none), the high water of each shard and the entries loaded;
// d.snapMax gets each shard's highest entry version.
func (s *Server) loadSnapshot(dir string, secs map[int]*secState, d *durable) (uint64, map[int]uint64, int, error) {
	segs, err := snapshots(dir)
	if err != nil || len(segs) == 0 {
		return 0, nil, 0, err
	}
	seg := segs[len(segs)-1]
	path := filepath.Join(dir, fmt.Sprintf("%s%016x", snapPrefix, seg))
	bad := func(format string, a ...any) error {
		return fmt.Errorf("snapshot %s is damaged (%s): %w", path, fmt.Sprintf(format, a...), errSnapshotDamaged)
	}
	// Read in pieces, twice (the checksum first: nothing is loaded from
	// a damaged file), not whole: a buffer the size of the file (122 MiB
	// for 1M keys) would cost its memory's first touch on top of the
	// tables' (wal/scan.go).
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, 0, err
	}
	size := fi.Size()
	if size < 24 {
		return 0, nil, 0, bad("bad header")
	}
	buf := make([]byte, snapChunk+64<<10)
	sum := crc32.New(castagnoli)
	if _, err := io.CopyBuffer(sum, io.NewSectionReader(f, 0, size-4), buf); err != nil {
		return 0, nil, 0, err
	}
	var tail [4]byte
	if _, err := f.ReadAt(tail[:], size-4); err != nil {
		return 0, nil, 0, err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size-4), 256<<10)
	var head [20]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, 0, err
	}
	if string(head[:8]) != snapMagic {
		return 0, nil, 0, bad("bad header")
	}
	if v := binary.BigEndian.Uint32(head[8:]); v != snapVersion {
		return 0, nil, 0, bad("version %d", v)
	}
	if sum.Sum32() != binary.BigEndian.Uint32(tail[:]) {
		return 0, nil, 0, bad("checksum mismatch")
	}
	if got := binary.BigEndian.Uint64(head[12:]); got != seg {
		return 0, nil, 0, bad("names segment %d", got)
	}
	high := make(map[int]uint64)
	n := 0
	for left := size - 4 - 20; ; {
		var sh [9]byte
		if left < 9 {
			return 0, nil, 0, bad("no end section")
		}
		if _, err := io.ReadFull(r, sh[:]); err != nil {
			return 0, nil, 0, err
		}
		kind, shard, l := sh[0], int(binary.BigEndian.Uint32(sh[1:])), int64(binary.BigEndian.Uint32(sh[5:]))
		if l > left-9 {
			return 0, nil, 0, bad("section of %d bytes past the end", l)
		}
		left -= 9 + l
		if int64(cap(buf)) < l {
			buf = make([]byte, l)
		}
		body := buf[:l]
		if _, err := io.ReadFull(r, body); err != nil {
			return 0, nil, 0, err
		}
		if kind == 'Z' {
			break
		}
		if kind == 'D' {
			// The section's shard field is the records' origin (0 in
			// snapshots written before origins were kept).
			if err := s.dd.restore(body, uint32(shard)); err != nil {
				return 0, nil, 0, bad("sessions: %v", err)
			}
			continue
		}
		st := secs[shard]
		if st == nil {
			st = &secState{shard: shard, t: s.tableFor(shard), dd: s.dd, seeding: true, log: s.log}
			secs[shard] = st
		}
		switch kind {
		case 'S':
			if l != 32 {
				return 0, nil, 0, bad("shard header of %d bytes", l)
			}
			st.last = binary.BigEndian.Uint64(body)
			d.note(shard, binary.BigEndian.Uint64(body[8:]))
			high[shard] = binary.BigEndian.Uint64(body[16:])
			st.t.reserve(int(binary.BigEndian.Uint64(body[24:])))
		case 'E', 'T':
			for len(body) > 0 {
				k, v, ver, rest, err := wire.NextSeedEntry(body)
				if err != nil {
					return 0, nil, 0, bad("shard %d: %v", shard, err)
				}
				st.t.merge(unsafe.String(unsafe.SliceData(k), len(k)), v, ver, kind == 'T', true)
				body = rest
				n++
				if ver > d.snapMax[shard] {
					d.snapMax[shard] = ver
				}
			}
		default:
			return 0, nil, 0, bad("section kind %d", kind)
		}
	}
	return seg, high, n, nil
}
