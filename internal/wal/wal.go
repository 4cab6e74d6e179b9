// Package wal is ftkv's write-ahead log: records appended in batches to
// numbered segment files, each batch framed with its length, a sequence
// number and a CRC-32C, written with one write and (by policy) one fsync.
//
// Group commit: Append queues records and a completion callback and
// returns at once; one goroutine writes everything queued since its last
// write as one batch, syncs it, and calls the callbacks in order. Writers
// arriving while a batch is being synced share the next write and fsync.
//
// Recovery (Open) replays every whole batch in order. The first batch that
// is torn (short) or fails its checksum ends the log: the segment is
// truncated there and later segments are removed, so a damaged middle is
// never skipped over and a torn tail never stops a start.
package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Policy says when appended batches are fsynced.
type Policy int

const (
	// SyncAlways fsyncs every batch before its callbacks run.
	SyncAlways Policy = iota
	// SyncEverySec writes every batch before its callbacks run and fsyncs
	// once a second: a crash of the machine loses at most about a second.
	SyncEverySec
	// SyncNo writes every batch and leaves syncing to the kernel.
	SyncNo
)

// ParsePolicy parses "always", "everysec" or "no".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "always", "":
		return SyncAlways, nil
	case "everysec":
		return SyncEverySec, nil
	case "no":
		return SyncNo, nil
	}
	return 0, fmt.Errorf("fsync policy %q: want always, everysec or no", s)
}

func (p Policy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncEverySec:
		return "everysec"
	case SyncNo:
		return "no"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// ErrClosed is returned for appends after Close.
var ErrClosed = errors.New("wal: closed")

// batchHeader: 4 payload length, 4 CRC-32C of (sequence, payload), 8 sequence.
const batchHeader = 16

// maxBatch bounds a batch's payload; a longer length field is corruption.
const maxBatch = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a Log. Zero values mean the documented default.
type Options struct {
	Policy      Policy
	SegmentSize int64         // start a new segment past this size (default 16 MiB)
	FS          FS            // file layer (default: the operating system's)
	Interval    time.Duration // SyncEverySec's period (default 1 s)
	// NoPrealloc turns off segments made ahead of time full of zeros
	// (see Preallocator); they are used when FS offers them.
	NoPrealloc bool
	// OnSync, if set, is called on the writer goroutine with the time
	// every fsync took (for metrics); it must not block.
	OnSync func(time.Duration)
	// Start is the first segment to replay: older ones are made obsolete
	// by a snapshot (see Rotate) and are removed, not replayed.
	Start uint64
}

// Recovery describes what Open found.
type Recovery struct {
	Batches   int    // whole batches replayed
	Records   int    // records replayed
	Truncated int64  // bytes dropped from the damaged segment
	Removed   int    // whole segments removed after it
	Reason    string // why the log ended early ("" if it ended cleanly)
	// Middle: the damage is not a torn tail: whole segments (Removed), or
	// a whole batch of the log's next sequence, follow it. What follows
	// may be writes no other copy holds.
	Middle bool
	// SetAside names the copies kept of what a damage in the middle of
	// the log cut off (whole segments followed it): the damaged segment
	// and those after it, as <segment>.<unix ns>.damaged, for an operator. A torn
	// tail (nothing after the damaged segment) is only truncated.
	SetAside []string
	// SetAsideErr is why those copies could not all be kept (the start
	// goes on without them: never a refusal to start).
	SetAsideErr error
	// ReplayTime is how long reading and replaying the segments took;
	// the rest of Open is getting the first segment to append to ready.
	ReplayTime time.Duration
}

// Writer collects one Append's records.
type Writer struct{ buf []byte }

// Record appends one record, whose bytes fn appends to the dst it is given.
func (w *Writer) Record(fn func(dst []byte) []byte) {
	at := len(w.buf)
	w.buf = append(w.buf, 0, 0, 0, 0)
	w.buf = fn(w.buf)
	binary.BigEndian.PutUint32(w.buf[at:], uint32(len(w.buf)-at-4))
}

// Log is an open write-ahead log.
type Log struct {
	opt Options
	dir string

	mu       sync.Mutex
	cond     *sync.Cond // signalled when there is work for the writer
	pend     Writer
	cbs      []func(error)
	barriers []barrier // Rotate requests
	err      error     // sticky: the first write or sync error (setErrLocked)
	closed   bool
	tick     bool   // SyncEverySec (and lazy appends): the period is up
	needSync bool   // an Append (not AppendLazy) is pending
	seq      uint64 // sequence of the last batch written

	// size and failed are read without mu (Size, Err): a server's
	// heartbeat report reads them, and appends of large records hold mu
	// while they copy them (hundreds of milliseconds on a starved CPU:
	// the report took that long, and a live server fell silent as if
	// wedged, TestLogStateReadWhileAppendsHoldTheLock).
	size   atomic.Int64          // bytes in segments now on disk (all segments)
	failed atomic.Pointer[error] // err, once set

	// wmu is held by whoever writes to the segment: the writer goroutine
	// for a batch and its callbacks, or TryWrite. The writer takes it
	// before it takes the queued batch (under mu), so records are written
	// in the order they were queued or tried.
	wmu    sync.Mutex
	direct []byte // TryWrite's buffer (under wmu)

	// under wmu
	f        File
	segID    uint64
	segSize  int64
	segAlloc int64 // bytes of zeros the segment was made with (0: appended)
	dirty    bool  // written since the last fsync
	done     chan struct{}
	spare    chan error // the next segment's preparation (nil: none under way)
}

// spareName is the file a segment is prepared in before it is adopted;
// it never matches a segment's name.
const spareName = "next-segment.pre"

// Open recovers the log in dir (creating it if needed), calling replay for
// every record of every whole batch in order (rec is valid only during the
// call), and returns the log ready for appends.
func Open(dir string, opt Options, replay func(rec []byte) error) (*Log, Recovery, error) {
	if opt.FS == nil {
		opt.FS = OSFS{}
	}
	if opt.SegmentSize <= 0 {
		opt.SegmentSize = 16 << 20
	}
	if opt.Interval <= 0 {
		opt.Interval = time.Second
	}
	l := &Log{opt: opt, dir: dir, done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	if err := opt.FS.MkdirAll(dir); err != nil {
		return nil, Recovery{}, err
	}
	_ = opt.FS.Remove(l.dir + "/" + spareName) // an earlier incarnation's
	segs, err := l.segments()
	if err != nil {
		return nil, Recovery{}, err
	}
	var rec Recovery
	for len(segs) > 0 && segs[0] < opt.Start {
		// A snapshot covers it; the crash came before RemoveBefore.
		if err := opt.FS.Remove(l.path(segs[0])); err != nil {
			return nil, rec, err
		}
		segs = segs[1:]
	}
	end := -1 // index of the last segment kept
	var sc scanner
	began := time.Now()
	for i, id := range segs {
		good, reason, err := sc.scanFile(opt.FS, l.path(id), &l.seq, replay, &rec)
		if err != nil {
			return nil, rec, err
		}
		end = i
		l.size.Add(good)
		size, err := opt.FS.Size(l.path(id))
		if err != nil {
			return nil, rec, err
		}
		if reason == "" && good < size {
			// A preallocated segment's unused zeros: trimmed, so that a
			// segment's size on disk is what was written (RemoveBefore
			// counts it). (The truncation is synced.)
			if err := opt.FS.Truncate(l.path(id), good); err != nil {
				return nil, rec, err
			}
		} else if reason == "" && good > 0 {
			// What was replayed may have been written and never synced
			// (lazily appended records, the process killed): the server
			// acts on it now (it answers retries of those writes, a copy
			// may lead from them), so it is made durable before, or a
			// power cut after the restart would take it back
			// (TestReplayedRecordsAreDurable).
			if err := opt.FS.Sync(l.path(id)); err != nil {
				return nil, rec, err
			}
		}
		if reason != "" {
			rec.Reason = fmt.Sprintf("segment %d at offset %d: %s", id, good, reason)
			data, err := opt.FS.ReadFile(l.path(id))
			if err != nil {
				return nil, rec, err
			}
			used := int64(len(data)) // a preallocated segment's zeros were never written
			for used > good && data[used-1] == 0 {
				used--
			}
			rec.Truncated = used - good
			rec.Middle = i+1 < len(segs) || batchAfter(data[good:used], l.seq)
			if rec.Middle {
				// Whole segments follow the damage: not a torn tail but
				// corruption, and what follows may be writes no other
				// copy holds. Kept aside, never replayed.
				rec.SetAside, rec.SetAsideErr = setAside(opt.FS, dir, l.path(id), data[:used], segs[i+1:], l.path)
			}
			if err := opt.FS.Truncate(l.path(id), good); err != nil {
				return nil, rec, err
			}
			for _, later := range segs[i+1:] {
				if err := opt.FS.Remove(l.path(later)); err != nil {
					return nil, rec, err
				}
				rec.Removed++
			}
			if err := opt.FS.SyncDir(dir); err != nil {
				return nil, rec, err
			}
			break
		}
	}
	rec.ReplayTime = time.Since(began)
	// Empty segments at the end are what starts that wrote nothing left
	// (one each: on a full disk, every respawn): removed, and the first
	// one's number reused (TestEmptySegmentsDoNotPileUp).
	var reuse uint64
	for ; end >= 0; end-- {
		size, err := opt.FS.Size(l.path(segs[end]))
		if err != nil {
			return nil, rec, err
		}
		if size != 0 {
			break
		}
		if err := opt.FS.Remove(l.path(segs[end])); err != nil {
			return nil, rec, err
		}
		reuse = segs[end]
	}
	// Appends go to a fresh segment: a recovered one is never written again.
	next := max(opt.Start, 1, reuse)
	if end >= 0 {
		next = max(next, segs[end]+1)
	}
	l.prepareSpare()
	if err := l.openSegment(next, true); err != nil {
		_ = l.takeSpare(true)
		return nil, rec, err
	}
	go l.run()
	return l, rec, nil
}

// batchAfter reports whether b (what follows the last whole batch of a
// damaged segment) holds, past its first byte, a whole batch with
// sequence last+2: the batch after the damaged one, so the damage is in
// the middle, not a torn tail (whose last batch is the damaged one).
func batchAfter(b []byte, last uint64) bool {
	var want [8]byte
	binary.BigEndian.PutUint64(want[:], last+2)
	for off := 1; off+batchHeader <= len(b); {
		i := bytes.Index(b[off+8:], want[:])
		if i < 0 {
			return false
		}
		at := off + i // the candidate header's start
		off = at + 1
		if at+batchHeader > len(b) {
			return false
		}
		h := b[at : at+batchHeader]
		n := int(binary.BigEndian.Uint32(h))
		if n > maxBatch || n > len(b)-at-batchHeader {
			continue
		}
		c := crc32.Update(0, castagnoli, h[8:16])
		if crc32.Update(c, castagnoli, b[at+batchHeader:at+batchHeader+n]) == binary.BigEndian.Uint32(h[4:]) {
			return true
		}
	}
	return false
}

// damagedSuffix names a segment kept aside by recovery (Recovery.SetAside),
// as <segment>.<time>.damaged; such files are not segments (they do not
// end in .wal).
const damagedSuffix = ".damaged"

// setAside writes data (the damaged segment as written) and a copy of
// each later segment next to them as <name>.damaged, synced, before
// recovery truncates and removes the originals. It stops at the first
// error (a full disk): what it kept, and why it stopped.
func setAside(fs FS, dir, damaged string, data []byte, later []uint64, path func(uint64) string) ([]string, error) {
	var kept []string
	// The recovery's time in the names: a segment id is used again after
	// the truncation, and a later damage must not overwrite what an
	// earlier one kept.
	stamp := "." + strconv.FormatInt(time.Now().UnixNano(), 10)
	keep := func(name string, b []byte) error {
		name += stamp
		f, err := fs.Create(name + damagedSuffix)
		if err != nil {
			return err
		}
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = fs.Remove(name + damagedSuffix)
			return err
		}
		kept = append(kept, name+damagedSuffix)
		return nil
	}
	if err := keep(damaged, data); err != nil {
		return kept, err
	}
	for _, id := range later {
		b, err := fs.ReadFile(path(id))
		if err != nil {
			return kept, err
		}
		if err := keep(path(id), b); err != nil {
			return kept, err
		}
	}
	// Durable before the originals are truncated and removed.
	return kept, fs.SyncDir(dir)
}

// ErrNoStart is ReadFrom's answer when no record of the log is one it may
// start from.
var ErrNoStart = errors.New("wal: no record to start reading from")

// ReadFrom is ReadAll from the newest segment that holds a record for
// which start reports true; when none does, it returns ErrNoStart.
// Segments are searched from the newest back, so a reader that wants only
// the recent end of a long log (a partial resync after a short outage)
// reads a segment or two, not the whole log. fn sees every record of the
// segments from there on, in order, as ReadAll would.
func (l *Log) ReadFrom(start func(rec []byte) bool, fn func(rec []byte) error) error {
	segs, err := l.segments()
	if err != nil {
		return err
	}
	from := -1
	errFound := errors.New("found")
	var sc scanner
	for i := len(segs) - 1; i >= 0 && from < 0; i-- {
		var seq uint64
		var rec Recovery
		_, _, err = sc.scanFile(l.opt.FS, l.path(segs[i]), &seq, func(r []byte) error {
			if start(r) {
				return errFound
			}
			return nil
		}, &rec)
		switch {
		case err == errFound:
			from = i
		case err != nil:
			return err
		}
	}
	if from < 0 {
		return ErrNoStart
	}
	return l.read(&sc, segs[from:], fn)
}

// ReadAll calls fn for every record of every whole batch the log's
// segments hold now (rec is valid only during the call), in order, while
// the log takes appends (a batch being
// written ends the read). A segment removed meanwhile (RemoveBefore)
// fails it. With SyncAlways everything whose callback
// ran is read; with the other policies everything written.
func (l *Log) ReadAll(fn func(rec []byte) error) error {
	segs, err := l.segments()
	if err != nil {
		return err
	}
	var sc scanner
	return l.read(&sc, segs, fn)
}

// read is ReadAll over the segments segs, through sc.
func (l *Log) read(sc *scanner, segs []uint64, fn func(rec []byte) error) error {
	var seq uint64
	var rec Recovery
	for _, id := range segs {
		_, reason, err := sc.scanFile(l.opt.FS, l.path(id), &seq, fn, &rec)
		if err != nil {
			return err
		}
		if reason != "" {
			return nil // the batch being written
		}
	}
	return nil
}

func (l *Log) path(id uint64) string { return l.dir + "/" + fmt.Sprintf("%016x.wal", id) }

func (l *Log) segments() ([]uint64, error) {
	names, err := l.opt.FS.List(l.dir)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, n := range names {
		if !strings.HasSuffix(n, ".wal") {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(n, ".wal"), 16, 64)
		if err == nil {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// openSegment makes segment id the one appended to: the prepared spare if
// there is one, else an empty file. It then starts preparing the next
// spare. Only with wait does it wait for a spare under way: a rotation
// that did waited seconds when the disk was busy with writes of 1 MiB
// values (16 MiB of zeros, synced, for each spare), and every write with
// it; it goes on in an empty file, and the spare, once made, serves a
// later rotation (TestRotationDoesNotWaitForSpare).
func (l *Log) openSegment(id uint64, wait bool) error {
	var f File
	alloc := int64(0)
	if err := l.takeSpare(wait); err == nil {
		pa := l.opt.FS.(Preallocator)
		if af, err := pa.Adopt(l.dir+"/"+spareName, l.path(id)); err == nil {
			f, alloc = af, l.opt.SegmentSize
		}
	}
	if f == nil {
		var err error
		if f, err = l.opt.FS.Create(l.path(id)); err != nil {
			return err
		}
	}
	if err := l.opt.FS.SyncDir(l.dir); err != nil {
		_ = f.Close()
		return err
	}
	l.f, l.segID, l.segSize, l.segAlloc = f, id, 0, alloc
	l.prepareSpare()
	return nil
}

// prepareSpare starts making the next segment in the background, when the
// file layer can and preallocation is on.
func (l *Log) prepareSpare() {
	pa, ok := l.opt.FS.(Preallocator)
	if !ok || l.opt.NoPrealloc || l.spare != nil {
		return
	}
	ch := make(chan error, 1)
	l.spare = ch
	go func() { ch <- pa.Prepare(l.dir+"/"+spareName, l.opt.SegmentSize) }()
}

// errSpareNotReady: the spare is still being prepared.
var errSpareNotReady = errors.New("wal: the spare segment is not ready yet")

// takeSpare says whether the spare is ready (nil) to be adopted, waiting
// for its preparation with wait; without, a preparation under way stays
// so (errSpareNotReady).
func (l *Log) takeSpare(wait bool) error {
	if l.spare == nil {
		return errors.New("wal: no spare segment")
	}
	var err error
	if wait {
		err = <-l.spare
	} else {
		select {
		case err = <-l.spare:
		default:
			return errSpareNotReady
		}
	}
	l.spare = nil
	return err
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Append queues the records fill writes and calls done once they are
// written (and, with SyncAlways, synced), or with the error that stopped
// them. done runs on the log's goroutine, in append order; it must not
// block or call Append. After a write or sync error every append fails.
func (l *Log) Append(fill func(w *Writer), done func(error)) {
	l.append(fill, done, true)
}

// AppendLazy is Append for records that need not be synced before done
// runs, whatever the policy: they are written with the next batch and
// synced with the next batch that must be (or within Options.Interval).
// With SyncAlways, a batch of lazy records only costs a write.
func (l *Log) AppendLazy(fill func(w *Writer), done func(error)) {
	l.append(fill, done, false)
}

func (l *Log) append(fill func(w *Writer), done func(error), sync bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sync {
		l.needSync = true
	}
	if !l.closed && l.err == nil {
		if len(l.pend.buf) == 0 {
			l.pend.buf = append(l.pend.buf, make([]byte, batchHeader)...) // the header, filled by write
		}
		fill(&l.pend)
	}
	l.cbs = append(l.cbs, done)
	l.cond.Signal()
}

// Rotate starts a new segment once everything appended before the call is
// written and its callbacks have run, and returns the new segment's id:
// records in earlier segments are all reflected wherever their callbacks
// put them. Snapshots use it to know which segments they make obsolete.
func (l *Log) Rotate() (uint64, error) { return l.RotateAt(nil) }

// barrier is a Rotate request: at (if set) runs at the rotation.
type barrier struct {
	ch chan uint64
	at func()
}

// RotateAt is Rotate, and runs at (if not nil) at the rotation itself:
// after every record of the earlier segments is written and its callback
// has run, before any later record is written (TryWrite included). What
// at reads of the callbacks' effects is then exactly the earlier
// segments' (read after Rotate returns, it may include later records).
func (l *Log) RotateAt(at func()) (uint64, error) {
	ch := make(chan uint64, 1)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	l.barriers = append(l.barriers, barrier{ch, at})
	l.cond.Signal()
	l.mu.Unlock()
	id := <-ch
	if id == 0 {
		return 0, l.Err()
	}
	return id, nil
}

// RemoveBefore deletes every segment older than id.
func (l *Log) RemoveBefore(id uint64) error {
	segs, err := l.segments()
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s >= id {
			break
		}
		fi, _ := l.opt.FS.Size(l.path(s))
		if err := l.opt.FS.Remove(l.path(s)); err != nil {
			return err
		}
		l.size.Add(-fi)
	}
	return l.opt.FS.SyncDir(l.dir)
}

// Size is the number of bytes in the log's segments.
func (l *Log) Size() int64 { return l.size.Load() }

// Err is the error that stopped the log, if any.
func (l *Log) Err() error {
	if p := l.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// setErrLocked records err as the log's error unless it has one (l.mu
// held).
func (l *Log) setErrLocked(err error) {
	if l.err == nil {
		l.err = err
		l.failed.Store(&err)
	}
}

// Fail stops the log with err, as a write error does: every append from
// now on (and any queued) reports it. For a failure the log cannot see
// itself (its directory deleted under it: writes still succeed, into
// files nobody will find).
func (l *Log) Fail(err error) {
	l.mu.Lock()
	l.setErrLocked(err)
	l.cond.Signal()
	l.mu.Unlock()
}

// Policy is the log's fsync policy.
func (l *Log) Policy() Policy { return l.opt.Policy }

// Close writes and syncs what is queued, runs the callbacks and closes
// the segment.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	l.cond.Signal()
	l.mu.Unlock()
	<-l.done
	if l.takeSpare(true) == nil {
		_ = l.opt.FS.Remove(l.dir + "/" + spareName)
	}
	if err := l.f.Close(); err != nil && l.Err() == nil {
		return err
	}
	if l.segSize < l.segAlloc && l.Err() == nil {
		if err := l.opt.FS.Truncate(l.path(l.segID), l.segSize); err != nil {
			return fmt.Errorf("wal: trim segment %d: %w", l.segID, err)
		}
	}
	return l.Err()
}

// run is the writer goroutine: one write (and fsync) per batch of
// everything queued meanwhile.
func (l *Log) run() {
	defer close(l.done)
	var spare []byte
	var cbs []func(error)
	if l.opt.Policy != SyncNo {
		// everysec's period; with always, lazily appended records are
		// synced within it too.
		go l.ticker()
	}
	for {
		l.mu.Lock()
		for len(l.cbs) == 0 && len(l.barriers) == 0 && !l.closed && !l.tick {
			l.cond.Wait()
		}
		l.mu.Unlock()
		l.wmu.Lock()
		l.mu.Lock()
		buf := l.pend.buf
		l.pend.buf = spare[:0]
		cbs, l.cbs = l.cbs, cbs[:0]
		barriers := l.barriers
		l.barriers = nil
		closed := l.closed
		syncTick := l.tick
		l.tick = false
		mustSync := l.needSync
		l.needSync = false
		err := l.err
		l.mu.Unlock()

		if err == nil && len(buf) > 0 {
			err = l.write(buf)
		}
		if err == nil && l.dirty && ((l.opt.Policy == SyncAlways && mustSync) || syncTick || closed || len(barriers) > 0) {
			err = l.sync()
		}
		if err != nil {
			l.mu.Lock()
			l.setErrLocked(err)
			err = l.err
			l.mu.Unlock()
		}
		for _, cb := range cbs {
			cb(err)
		}
		clear(cbs)
		spare = buf
		for _, b := range barriers {
			if err == nil {
				if b.at != nil {
					b.at()
				}
				err = l.rotate()
			}
			if err != nil {
				b.ch <- 0
			} else {
				b.ch <- l.segID
			}
		}
		l.wmu.Unlock()
		if closed {
			return
		}
	}
}

// TryWrite writes the records fill adds at once, on the caller's
// goroutine, with one write system call and no sync, then runs then (as
// Append runs done(nil), and before any Rotate can return: a snapshot
// must find the records' effects), and reports whether it did. It does
// only when that keeps every record in order and costs no wait: the
// policy is not SyncAlways (whose records are synced before they count),
// nothing is queued, the writer goroutine is idle (not writing, syncing
// or running callbacks) and the segment has room. Otherwise (false)
// nothing is written and the caller Appends the records. A write error
// stops the log as in Append (false is returned: the Append that follows
// reports it). then must not call the log.
//
// size is about how many bytes fill adds: over MaxDirect, nothing is
// tried (false). A write to a disk that cannot keep up blocks its
// caller, the kernel throttling a writer by the pages it dirties; the
// callers are event loops, which must not wait for the disk.
//
// A primary whose policy is everysec or no answers its clients as soon
// as its records are written: waking the writer goroutine and hearing
// back from it took longer than the write (13% of a replicated SET's
// throughput at everysec; docs/DESIGN.md, Group commit).
func (l *Log) TryWrite(size int, fill func(w *Writer), then func()) bool {
	return l.tryWrite(size, fill, then, false)
}

// TryWriteLazy is TryWrite for records that need not be synced before
// then runs, as AppendLazy's: whatever the policy (with SyncAlways they
// are synced with the next batch that must be, or within
// Options.Interval).
func (l *Log) TryWriteLazy(size int, fill func(w *Writer), then func()) bool {
	return l.tryWrite(size, fill, then, true)
}

// MaxDirect is the most TryWrite writes on its caller's goroutine. A
// secondary's event loop wrote 1 MiB values itself: on a disk that could
// not keep up the write took up to 1.75 s, and its link, unanswered as
// long, had the coordinator fail it (TestSecondarySlowDiskDoesNotHoldAcks).
const MaxDirect = 64 << 10

func (l *Log) tryWrite(size int, fill func(w *Writer), then func(), lazy bool) bool {
	if (l.opt.Policy == SyncAlways && !lazy) || size > MaxDirect || !l.wmu.TryLock() {
		return false
	}
	defer l.wmu.Unlock()
	l.mu.Lock()
	if l.closed || l.err != nil || len(l.pend.buf) > 0 || len(l.cbs) > 0 || len(l.barriers) > 0 ||
		l.segSize >= l.opt.SegmentSize {
		l.mu.Unlock()
		return false
	}
	l.mu.Unlock()
	// Appends from now on are queued, and written by the writer after
	// this (it needs wmu).
	w := Writer{buf: append(l.direct[:0], make([]byte, batchHeader)...)}
	fill(&w)
	err := l.write(w.buf)
	if cap(w.buf) <= 1<<20 {
		l.direct = w.buf
	}
	if err != nil {
		l.mu.Lock()
		l.setErrLocked(err)
		l.mu.Unlock()
		return false
	}
	then()
	return true
}

// ticker wakes the writer once per interval for SyncEverySec's fsync.
func (l *Log) ticker() {
	t := time.NewTicker(l.opt.Interval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			l.mu.Lock()
			l.tick = true
			l.cond.Signal()
			l.mu.Unlock()
		}
	}
}

// write writes one batch: buf is its header's room followed by its records.
func (l *Log) write(buf []byte) error {
	if l.segSize >= l.opt.SegmentSize {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.seq++
	seq := l.seq
	l.mu.Unlock()
	h, payload := buf[:batchHeader], buf[batchHeader:]
	binary.BigEndian.PutUint32(h, uint32(len(payload)))
	binary.BigEndian.PutUint64(h[8:], seq)
	c := crc32.Update(0, castagnoli, h[8:16])
	binary.BigEndian.PutUint32(h[4:], crc32.Update(c, castagnoli, payload))
	// One write system call per batch: header and payload together.
	n, err := l.f.Write(buf)
	l.segSize += int64(n)
	l.size.Add(int64(n))
	l.dirty = true
	if err == nil && n < len(buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("wal: write segment %d: %w", l.segID, err)
	}
	return nil
}

func (l *Log) sync() error {
	start := time.Now()
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("wal: fsync segment %d: %w", l.segID, err)
	}
	if l.opt.OnSync != nil {
		l.opt.OnSync(time.Since(start))
	}
	l.dirty = false
	return nil
}

// rotate syncs and closes the current segment and opens the next one.
func (l *Log) rotate() error {
	if l.dirty || l.opt.Policy != SyncNo {
		if err := l.sync(); err != nil {
			return err
		}
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("wal: close segment %d: %w", l.segID, err)
	}
	if l.segSize < l.segAlloc {
		// The zeros a rotation left unused would only take disk space.
		if err := l.opt.FS.Truncate(l.path(l.segID), l.segSize); err != nil {
			return fmt.Errorf("wal: trim segment %d: %w", l.segID, err)
		}
	}
	return l.openSegment(l.segID+1, false)
}
