package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"ftkv/internal/wal"
	"ftkv/wire"
)

// The server's write-ahead log (with Config.DataDir) holds every write
// this server committed as a primary and every write it applied as a
// secondary, both as the REPL frames of the replication stream, plus the
// re-seeding entries it received. A log record is
//
//	1 kind, 4 shard, body
//
// kind recFrames: body is one or more REPL frames (wire encoding);
// kind recSeed: body is the packed entries of one SEED frame;
// kind recDedup: body is the session records of one DEDUP seed frame;
// kind recReset: body is 8 bytes, the base of a full re-seeding that
// starts here: the shard's table is emptied and its log goes on from base;
// kind recSeedDone: body is 8 bytes, the index the re-seeding that the
// last reset started had reached when its last entry arrived (or a
// partial resync, or a promotion: see below). Between a
// reset and its recSeedDone the shard's copy is partial: recovered, it is
// reported as no copy at all, so it is never chosen as a primary;
// kind recResync (no body): a partial resync starts: the table stays, the
// writes after it follow as frames, and the copy is partial until a
// recSeedDone.
//
// A recSeedDone also marks the index a copy stands at where no write
// carries it: the end of a partial resync that brought the copy to a
// promotion's index, and a promotion itself (its indexes start
// LineageGap above the last write, logPromotion). A copy is recovered at
// the highest of its last write and the marks after its last reset, and
// a partial resync read from the log reaches the highest mark
// (readResync). Without them, a copy killed while nothing was written
// came back below its shard's index, and was re-seeded in full, at every
// idle kill after the first (TestPartialResyncIdleKillsInTurn). A mark
// follows every write below it: a read's frames applied before its end
// of re-seeding are logged before that end (peer.go), or a kill between
// the two left a copy recovered at the mark without them
// (TestReviewResyncEndMarkBeforeItsFrames). (Logs written before may
// still hold such frames after a mark: they are applied all the same.)
const (
	recFrames   byte = 1
	recSeed     byte = 2
	recDedup    byte = 3
	recReset    byte = 4
	recSeedDone byte = 5
	recResync   byte = 6
)

// Why a copy in the log is partial.
const (
	copyReseeding uint8 = 1 // a re-seeding started and did not finish
)

// identityFile names the server a data directory belongs to.
const identityFile = "IDENTITY"

// durable is the server's log and what it knows of it.
type durable struct {
	log      *wal.Log
	syncSec  bool // a secondary acknowledges only what its log synced
	mu       sync.Mutex
	logged   map[int]uint64 // per shard: highest log index written (per policy) to the log
	partial  map[int]uint8  // per shard: copyReseeding
	failOnce sync.Once
	broken   atomic.Bool // the log failed: refuse writes, acknowledge no replication

	snapMu    sync.Mutex // one snapshot at a time
	snapBytes int64      // size of the last snapshot (guarded by mu)
	snapSeg   uint64     // its first log segment not covered (guarded by mu)
	snapAt    time.Time  // when it was written (guarded by mu)
	policy    wal.Policy
	replayed  int // entries applied from the log at start (recovery only)
	// snapMax: per shard, the highest version in the snapshot loaded at
	// start (recovery only).
	snapMax map[int]uint64
	// resets: the shards whose log after the snapshot drops their copy
	// for a full re-seeding (recovery only): the snapshot's high water of
	// them was the dropped copy's.
	resets map[int]bool
	// marks: per shard, the highest index a recSeedDone after its last
	// reset marked (recovery only).
	marks map[int]uint64
}

// report is the log's part of a heartbeat.
func (d *durable) report() wire.StorageReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := wire.StorageReport{Fsync: d.policy.String(), Failed: d.broken.Load() || d.log.Err() != nil,
		LogBytes: uint64(max(d.log.Size(), 0)), SnapshotBytes: uint64(max(d.snapBytes, 0))}
	if !d.snapAt.IsZero() {
		r.SnapshotUnixMs = d.snapAt.UnixMilli()
	}
	return r
}

// loggedCopy returns the per-shard logged indexes.
func (d *durable) loggedCopy() map[int]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[int]uint64, len(d.logged))
	for sh, v := range d.logged {
		m[sh] = v
	}
	return m
}

// note records that shard's writes up to idx are in the log.
func (d *durable) note(shard int, idx uint64) {
	d.mu.Lock()
	if idx > d.logged[shard] {
		d.logged[shard] = idx
	}
	d.mu.Unlock()
}

// set records that shard's log starts over at idx (a full re-seeding):
// its copy is partial until seeded says otherwise.
func (d *durable) set(shard int, idx uint64) {
	d.mu.Lock()
	d.logged[shard] = idx
	d.partial[shard] = copyReseeding
	d.mu.Unlock()
}

// hold records a complete copy of shard at idx unless the log already
// holds one: so an empty copy is reported too.
func (d *durable) hold(shard int, idx uint64) {
	d.mu.Lock()
	if _, ok := d.logged[shard]; !ok {
		d.logged[shard] = idx
	}
	d.mu.Unlock()
}

// logHold appends, the first time this server holds a complete copy of
// shard (at idx) and its log has no record of it, a recSeedDone at idx:
// a restart then knows the copy exists even while it is empty, and tells
// a shard that lost both logs from one never written.
func (d *durable) logHold(s *Server, shard int, idx uint64) {
	d.mu.Lock()
	_, ok := d.logged[shard]
	d.mu.Unlock()
	if ok {
		return
	}
	d.logSeedDone(s, shard, idx, nil)
	d.hold(shard, idx)
}

// logPromotion marks in the log that this server leads shard from idx
// on, LineageGap above the last write its copy holds (recSeedDone; at
// that write for a hand-back, whose history goes on): appended before
// the first write it sequences, and after every write its copy applied
// as a secondary (fenced: s.fence). A restart recovers the copy at idx,
// and a partial resync read from this log reaches idx even when nothing
// was written since. then runs once the mark is durable per policy, or
// the log failed.
func (d *durable) logPromotion(s *Server, shard int, idx uint64, then func()) {
	d.logSeedDone(s, shard, idx, then)
	d.hold(shard, idx)
}

// forget records that this server no longer holds a copy of shard: its
// index is no longer reported, so no restore ever chooses the empty
// table a later view would find. (The records stay in the log until a
// snapshot passes them; a restart recovers that stale copy at its own
// index, as before.)
func (d *durable) forget(shard int) {
	d.mu.Lock()
	delete(d.logged, shard)
	delete(d.partial, shard)
	d.mu.Unlock()
}

// seeded records that shard's re-seeding is complete in the log.
func (d *durable) seeded(shard int) {
	d.mu.Lock()
	delete(d.partial, shard)
	d.mu.Unlock()
}

// isPartial reports whether shard's copy is partial.
func (d *durable) isPartial(shard int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.partial[shard] != 0
}

// anyPartial reports whether a shard's re-seeding is under way in the log.
func (d *durable) anyPartial() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.partial) > 0
}

// indexes returns the per-shard indexes of the complete copies, by shard.
func (d *durable) indexes() []wire.ShardIndex {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]wire.ShardIndex, 0, len(d.logged))
	for sh, idx := range d.logged {
		if d.partial[sh] != 0 {
			continue
		}
		out = append(out, wire.ShardIndex{Shard: uint32(sh), Index: idx})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Shard < out[j].Shard })
	return out
}

// errDisk is what writes are answered once the log failed.
const errDisk = "disk error: write not durable; refused"

// openDurable checks the data directory's identity, rebuilds the tables
// from the log and opens it for appends. Called by New, before any traffic.
func (s *Server) openDurable() error {
	dir := s.cfg.DataDir
	if err := os.MkdirAll(dir, wal.DirMode); err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			// (Not retried: starting it again cannot help.)
			return dataDirRefused{fmt.Errorf("server %d: data dir %s: a file is in the way (%v): refusing to use it", s.cfg.ID, dir, err)}
		}
		return fmt.Errorf("server %d: data dir: %w", s.cfg.ID, err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&^wal.DirMode != 0 {
		// (Made by the operator, or by an older ftkv: left as it is,
		// as etcd does.)
		s.log.Warn().Str("dir", dir).Str("mode", fi.Mode().Perm().String()).
			Msg("data dir is open to other users; 0700 keeps the keys and values to this one")
	}
	lock, err := lockDataDir(dir, s.cfg.Timing.KillWait)
	if err != nil {
		return fmt.Errorf("server %d: %w", s.cfg.ID, err)
	}
	s.dirLock = lock
	if err := checkIdentity(dir, s.cfg.ID, s.cfg.Servers, s.cfg.ClusterID, s.cfg.AdoptCluster, s.log); err != nil {
		return err
	}
	pol, err := wal.ParsePolicy(s.cfg.Fsync)
	if err != nil {
		return fmt.Errorf("server %d: %w", s.cfg.ID, err)
	}
	newDurable := func() *durable {
		return &durable{syncSec: s.cfg.SyncSecondary && pol == wal.SyncAlways, logged: make(map[int]uint64), partial: make(map[int]uint8), policy: pol, snapMax: make(map[int]uint64), resets: make(map[int]bool), marks: make(map[int]uint64)}
	}
	d := newDurable()
	start := time.Now()
	secs := make(map[int]*secState)
	seg, high, loaded, err := s.loadSnapshot(dir, secs, d)
	if errors.Is(err, errSnapshotDamaged) {
		// The copies it held are lost here, as with a lost data
		// directory: this server starts with none, reports none, and is
		// re-seeded from its neighbours (a shard whose only copy this
		// was is unavailable, never served empty). It refused to start:
		// the cluster's start failed, and the whole cluster stayed down
		// (an attack; TestRestartWithADamagedSnapshot).
		aside, aerr := setAsideDamaged(dir)
		if aerr != nil {
			return fmt.Errorf("server %d: recovering %s: %w; setting it aside: %v", s.cfg.ID, dir, err, aerr)
		}
		s.log.Error().Err(err).Str("kept_aside", aside).
			Msg("the latest snapshot is damaged: it and the log are set aside, and this server starts with no copy (re-seeded from its neighbours)")
		d, secs = newDurable(), make(map[int]*secState)
		seg, high, loaded, err = 0, nil, 0, nil
	}
	if err != nil {
		return fmt.Errorf("server %d: recovering %s: %w", s.cfg.ID, dir, err)
	}
	snapTook := time.Since(start)
	l, rec, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Policy: pol, FS: s.cfg.walFS, SegmentSize: s.cfg.walSegment, Start: seg, OnSync: s.met.observeSync}, func(r []byte) error {
		return s.replay(r, secs, d)
	})
	if err != nil {
		return fmt.Errorf("server %d: recovering %s: %w", s.cfg.ID, dir, err)
	}
	for shard, st := range secs {
		st.t.dropTombstones()
		if m := d.snapMax[shard]; m > st.last {
			// The snapshot holds writes the log after it does not reach
			// (a secondary applies before it logs, and the machine died
			// before the log had them): the copy is not the log's
			// history at any index, so it is re-seeded, never chosen.
			d.partial[shard] = copyReseeding
			s.log.Warn().Int("shard", shard).Uint64("snapshot_version", m).Uint64("log_index", st.last).
				Msg("the snapshot is ahead of the log: this copy will be re-seeded")
		} else {
			st.last = max(st.last, d.marks[shard])
		}
		d.note(shard, st.last)
		s.recovered[shard] = st.last
		// Every index this server used or logged: a promotion continues
		// above. (Not the indexes of a copy dropped since: those were
		// another history's.)
		hw := high[shard]
		if d.resets[shard] {
			hw = 0
		}
		s.highWater[shard] = max(st.last, hw, d.logged[shard])
	}
	if seg > 0 {
		if fi, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%s%016x", snapPrefix, seg))); err == nil {
			d.snapBytes, d.snapSeg, d.snapAt = fi.Size(), seg, fi.ModTime()
		}
	}
	d.log = l
	s.dur = d
	ev := s.log.Info()
	if rec.Reason != "" {
		ev = s.log.Warn().Str("damage", rec.Reason).Int64("truncated_bytes", rec.Truncated).Int("removed_segments", rec.Removed)
	}
	if rec.Middle {
		// Not a torn tail: whole segments, or whole batches, followed the
		// damage. This copy ends there; what was cut off is kept for an
		// operator.
		e := s.log.Error().Str("damage", rec.Reason).Int("removed_segments", rec.Removed).Strs("kept_aside", rec.SetAside)
		if rec.SetAsideErr != nil {
			e = e.AnErr("keeping_aside", rec.SetAsideErr)
		}
		e.Msg("the log is damaged before its end: recovered up to the damage; the segments after it are not replayed, and this server's copies are re-seeded, never chosen")
		// Its copies may miss acknowledged writes (those in the segments
		// cut off): none is reported complete, so none leads a shard or
		// seeds another; each is re-seeded from a complete copy, or its
		// shard is unavailable. (A copy cut at the damage was chosen
		// when the shard's other copy was lost, and served old values:
		// a black-box test, 694 acknowledged writes gone.)
		// Recorded (recResync, as a resync that has not ended) before the
		// server starts: the next start finds the damage set aside and
		// the log whole again, and must still know.
		cut := make(map[int]bool)
		for shard := range d.logged {
			cut[shard] = true
		}
		for shard := range secs {
			cut[shard] = true
		}
		done := make(chan error, 1)
		l.Append(func(w *wal.Writer) {
			for shard := range cut {
				w.Record(func(dst []byte) []byte { return appendRecHeader(dst, recResync, shard) })
			}
		}, func(err error) { done <- err })
		if err := <-done; err != nil {
			return fmt.Errorf("server %d: recording the copies cut by the damage in %s: %w", s.cfg.ID, dir, err)
		}
		d.mu.Lock()
		for shard := range cut {
			d.partial[shard] = copyReseeding
		}
		d.mu.Unlock()
	}
	took := time.Since(start)
	entries := loaded + d.replayed
	ev = ev.Int("entries", entries)
	if took > 0 {
		ev = ev.Float64("entries_per_sec", float64(entries)/took.Seconds())
	}
	ev.Str("dir", dir).Str("fsync", pol.String()).Uint64("snapshot", seg).Int("snapshot_entries", loaded).
		Float64("snapshot_ms", float64(snapTook.Microseconds())/1000).Int("records", rec.Records).Int("batches", rec.Batches).
		Float64("replay_ms", float64(rec.ReplayTime.Microseconds())/1000).Float64("took_ms", float64(time.Since(start).Microseconds())/1000).Msg("log recovered")
	return nil
}

// ErrDataDirRefused: the server refused its data directory as another
// server's or another cluster's, or as not empty and not a server's
// (bin/server exits ExitDataDirRefused: starting it again cannot help).
var ErrDataDirRefused = errors.New("data directory refused")

// ExitDataDirRefused is bin/server's exit status for ErrDataDirRefused,
// which no other failure uses (2 is any bad flag or failed start, 1 a
// failure while running): the coordinator does not start it again.
const ExitDataDirRefused = 3

// RefusedLine is the last line bin/server (process pid) writes to its
// standard error before it exits ExitDataDirRefused: a coordinator that
// spawned it over ssh learns of the refusal from it in the server's log
// (it cannot see the exit status of a process started in the background
// there). The pid keeps an earlier run's line from counting.
func RefusedLine(id uint32, inc uint64, pid int) string {
	return fmt.Sprintf("ftkv: server %d incarnation %d pid %d: data directory refused, exit status %d", id, inc, pid, ExitDataDirRefused)
}

// dataDirRefused is a refusal of the data directory (ErrDataDirRefused),
// with the reason as its message.
type dataDirRefused struct{ error }

func (dataDirRefused) Is(target error) bool { return target == ErrDataDirRefused }

// checkIdentity claims an empty directory for server id of a cluster of
// n servers (0: unknown) named cluster ("": not checked), or checks that
// the directory is this server's. The identity is one line, "ftkv server
// <id> of <n>", and, once a coordinator named its cluster, a second,
// "cluster <ID>". What an identity lacks (the size, the cluster: written
// before they were recorded) it gets now; an identity of another cluster
// is refused, or takes cluster if adopt (see Config.AdoptCluster).
func checkIdentity(dir string, id uint32, n int, cluster string, adopt bool, log zerolog.Logger) error {
	want := fmt.Sprintf("ftkv server %d\n", id)
	if n > 0 {
		want = fmt.Sprintf("ftkv server %d of %d\n", id, n)
	}
	if cluster != "" {
		want += "cluster " + cluster + "\n"
	}
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var gotID uint32
		var gotN int
		got, gotCluster, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		k, _ := fmt.Sscanf(got, "ftkv server %d of %d", &gotID, &gotN)
		exact := (k == 1 && got == fmt.Sprintf("ftkv server %d", gotID)) || (k == 2 && got == fmt.Sprintf("ftkv server %d of %d", gotID, gotN))
		if !exact || gotID != id {
			return dataDirRefused{fmt.Errorf("server %d: data dir %s belongs to %q, not to this server: refusing to use it", id, dir, got)}
		}
		if gotCluster != "" {
			c, ok := strings.CutPrefix(gotCluster, "cluster ")
			if !ok || c == "" || strings.ContainsAny(c, " \n") {
				return dataDirRefused{fmt.Errorf("server %d: data dir %s has an identity whose second line is not \"cluster <ID>\" (%q): refusing to use it", id, dir, gotCluster)}
			}
			gotCluster = c
		}
		if n > 0 && gotN > 0 && gotN != n {
			return dataDirRefused{fmt.Errorf("server %d: data dir %s belongs to a cluster of %d servers, this one has %d (the key->shard map depends on it): refusing to use it", id, dir, gotN, n)}
		}
		if cluster != "" && gotCluster != "" && gotCluster != cluster {
			if !adopt {
				return dataDirRefused{fmt.Errorf("server %d: data dir %s belongs to cluster %s, not to this cluster (%s): refusing to use it (its copies are another cluster's keys; move the directory away, or start that cluster's own coordinator)", id, dir, gotCluster, cluster)}
			}
			// The coordinator has no record of its cluster (its
			// state was lost): the directory is taken as this
			// cluster's, as before cluster IDs were recorded.
			log.Warn().Str("dir", dir).Str("was", gotCluster).Str("cluster", cluster).Msg("data dir of another cluster ID taken over: the coordinator's state is new")
		}
		if (n > 0 && gotN == 0) || (cluster != "" && gotCluster != cluster) {
			// An identity without the size (written before it was
			// recorded) gets it now: this cluster's size is the one
			// its data was written with, or the coordinator's own
			// record refused the start. Likewise the cluster's ID.
			return writeIdentity(dir, path, want, id)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("server %d: data dir: %w", id, err)
	}
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		// IDENTITY.tmp alone is what a claim that failed (a full disk)
		// or was killed leaves: the directory is still empty of data.
		// (LOCK is this process's, taken before the claim.)
		if e.Name() != identityFile+".tmp" && e.Name() != lockFile {
			return dataDirRefused{fmt.Errorf("server %d: data dir %s is not empty and has no %s: refusing to use it", id, dir, identityFile)}
		}
	}
	return writeIdentity(dir, path, want, id)
}

// writeIdentity writes want to path, in dir, atomically (a temporary
// file renamed over it) and durably.
func writeIdentity(dir, path, want string, id uint32) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // (one an older version left keeps its mode)
	if err := os.WriteFile(tmp, []byte(want), wal.FileMode); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("server %d: data dir: %w", id, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("server %d: data dir: %w", id, err)
	}
	return wal.OSFS{}.SyncDir(dir)
}

// replay applies one log record to the tables, as a secondary applies the
// replication stream: versions decide, deletes are remembered until the
// end (a later record may be older than a delete only through a seed).
func (s *Server) replay(r []byte, secs map[int]*secState, d *durable) error {
	if len(r) < 5 {
		return fmt.Errorf("log record of %d bytes", len(r))
	}
	kind, shard, body := r[0], int(binary.BigEndian.Uint32(r[1:])), r[5:]
	st := secs[shard]
	if st == nil {
		st = &secState{shard: shard, t: s.tableFor(shard), dd: s.dd, seeding: true, log: s.log}
		secs[shard] = st
	}
	switch kind {
	case recFrames:
		now := st.dd.clock()
		for len(body) > 0 {
			f, n, err := wire.Decode(body, len(body))
			if err != nil || n == 0 {
				return fmt.Errorf("log record of shard %d: bad frame: %v", shard, err)
			}
			body = body[n:]
			if f.ID > st.last {
				st.applyRepl(&f, now)
				d.replayed++
			}
		}
	case recSeed:
		for len(body) > 0 {
			k, v, ver, rest, err := wire.NextSeedEntry(body)
			if err != nil {
				return err
			}
			st.t.merge(string(k), v, ver, false, true)
			d.replayed++
			body = rest
		}
	case recDedup:
		return s.dd.restore(body, originOf(shard))
	case recReset:
		if len(body) != 8 {
			return fmt.Errorf("log record of shard %d: reset of %d bytes", shard, len(body))
		}
		st.t.reset()
		st.last = binary.BigEndian.Uint64(body)
		d.set(shard, st.last)
		s.dd.dropOrigin(shard)
		d.resets[shard] = true
		delete(d.marks, shard)
		return nil
	case recSeedDone:
		if len(body) != 8 {
			return fmt.Errorf("log record of shard %d: end of re-seeding of %d bytes", shard, len(body))
		}
		idx := binary.BigEndian.Uint64(body)
		d.seeded(shard)
		d.hold(shard, idx)
		d.marks[shard] = max(d.marks[shard], idx)
	case recResync:
		d.mu.Lock()
		d.partial[shard] = copyReseeding
		d.mu.Unlock()
		return nil
	default:
		return fmt.Errorf("log record of unknown kind %d", kind)
	}
	d.note(shard, st.last)
	return nil
}

// appendRecHeader starts a log record.
func appendRecHeader(dst []byte, kind byte, shard int) []byte {
	dst = append(dst, kind)
	return binary.BigEndian.AppendUint32(dst, uint32(shard))
}

// failed logs the log's first error once; from then on writes are
// refused and replication is not acknowledged (a secondary that cannot
// log must not let its primary commit: the primary's writes wait, its
// heartbeats report the link stalled, and the coordinator fails this
// server, whatever -fsync-secondary says).
func (d *durable) failed(s *Server, err error) {
	d.broken.Store(true)
	d.failOnce.Do(func() {
		s.log.Error().Err(err).Msg("write-ahead log failed: refusing writes and no longer acknowledging replication")
	})
}

// checkDataDir fails the log once the data directory was deleted under
// the server (dirGone). Called with each heartbeat.
func (s *Server) checkDataDir() {
	if s.dur.log.Err() != nil {
		return
	}
	s.lockMu.Lock()
	gone := !s.unlocked && dirGone(s.dirLock, s.cfg.DataDir)
	s.lockMu.Unlock()
	if !gone {
		return
	}
	err := fmt.Errorf("data dir %s was deleted or replaced under the running server", s.cfg.DataDir)
	s.dur.log.Fail(err)
	s.dur.failed(s, err)
}

// down reports whether the log (if any) failed; nil-safe.
func (d *durable) down() bool { return d != nil && d.broken.Load() }

// diskOK reports whether the log (if any) still takes writes.
func (e *primaryEnv) diskOK() bool { return e.dur == nil || e.dur.log.Err() == nil }

// logCommit appends the in-flight entries up to idx to the log and
// commits them (table, answers) once they are durable; the caller holds
// p.mu. With everysec or no, the log writes them at once when it can
// (wal.TryWrite): they are then applied here, their answers added to
// replies for the caller to send once it has released p.mu.
func (p *primary) logCommitLocked(idx uint64, replies *replyBatch) {
	if idx <= p.logged {
		return
	}
	from := p.logged
	p.logged = idx
	epoch := p.epoch
	var batch []*entry
	size := 0
	for _, e := range p.inflight {
		if e.index > from && e.index <= idx {
			batch = append(batch, e)
			size += wire.HeaderSize + len(e.key) + len(e.val) + len(e.out.value)
		}
	}
	shard := p.shard
	d := p.env.dur
	fill := func(w *wal.Writer) {
		w.Record(func(dst []byte) []byte {
			dst = appendRecHeader(dst, recFrames, shard)
			for _, e := range batch {
				dst = appendRepl(dst, e, epoch)
			}
			return dst
		})
	}
	if d.log.TryWrite(size, fill, func() {
		d.note(shard, idx)
		p.applyUpToLocked(idx, replies)
	}) {
		return
	}
	d.log.Append(fill, func(err error) {
		if err != nil {
			d.failed(p.env.srv, err)
			p.failUpTo(idx)
			return
		}
		d.note(shard, idx)
		p.applyUpTo(idx, nil)
	})
}

// failUpTo answers the in-flight entries up to idx UNAVAILABLE: the log
// could not make them durable. They are not applied here nor marked done,
// so a retry is refused too (its record stays in flight).
func (p *primary) failUpTo(idx uint64) {
	replies := newReplyBatch()
	defer replies.release()
	p.mu.Lock()
	n := 0
	for n < len(p.inflight) && p.inflight[n].index <= idx {
		e := p.inflight[n]
		if pd, ok := p.pending[e.key]; ok && pd.index == e.index {
			delete(p.pending, e.key)
		}
		e.answerWaiters(replies, errDisk)
		n++
	}
	rest := copy(p.inflight, p.inflight[n:])
	clear(p.inflight[rest:])
	p.inflight = p.inflight[:rest]
	if len(p.inflight) == 0 {
		p.drained.Broadcast()
	}
	p.mu.Unlock()
	replies.flush(nil)
}

// logFrames appends a secondary's applied REPL frames (wire encoding, in
// order) of shard to the log; done, if not nil, runs once they are
// durable per policy.
func (d *durable) logFrames(s *Server, shard int, frames []byte, last uint64, done func()) {
	appendFn := d.log.Append
	if done == nil {
		// A secondary's copy that its acknowledgement does not wait for
		// (no -fsync-secondary): written with the next batch, synced
		// with the next one that must be, or within a second. The
		// primary's log holds every acknowledged write on disk. Written
		// here and now when the log is idle and the frames are small (no
		// copy, no hand-off to its goroutine; wal.MaxDirect).
		if d.log.TryWriteLazy(len(frames), func(w *wal.Writer) {
			w.Record(func(dst []byte) []byte {
				return append(appendRecHeader(dst, recFrames, shard), frames...)
			})
		}, func() { d.note(shard, last) }) {
			return
		}
		appendFn = d.log.AppendLazy
	}
	body := append([]byte(nil), frames...)
	appendFn(func(w *wal.Writer) {
		w.Record(func(dst []byte) []byte {
			return append(appendRecHeader(dst, recFrames, shard), body...)
		})
	}, func(err error) {
		if err != nil {
			d.failed(s, err)
			return // never acknowledged: the primary's link stalls, it fails us
		}
		d.note(shard, last)
		if done != nil {
			done()
		}
	})
}

// logSeed appends one received SEED frame's entries (or session records).
func (d *durable) logSeed(s *Server, shard int, kind byte, value []byte) {
	body := append([]byte(nil), value...)
	d.log.Append(func(w *wal.Writer) {
		w.Record(func(dst []byte) []byte {
			return append(appendRecHeader(dst, kind, shard), body...)
		})
	}, func(err error) {
		if err != nil {
			d.failed(s, err)
		}
	})
}

// logSeedDone appends the end of shard's re-seeding, at index last (or
// another mark of a complete copy at last: see recSeedDone); then, if
// not nil, runs once the record is durable per policy, or the log failed
// (the server then refuses writes: a disk error).
func (d *durable) logSeedDone(s *Server, shard int, last uint64, then func()) {
	d.log.Append(func(w *wal.Writer) {
		w.Record(func(dst []byte) []byte {
			return binary.BigEndian.AppendUint64(appendRecHeader(dst, recSeedDone, shard), last)
		})
	}, func(err error) {
		if err != nil {
			d.failed(s, err)
		} else {
			d.seeded(shard)
			d.note(shard, last)
		}
		if then != nil {
			then()
		}
	})
}

// logResync appends the start of a partial resync of shard.
func (d *durable) logResync(s *Server, shard int) {
	d.mu.Lock()
	d.partial[shard] = copyReseeding
	d.mu.Unlock()
	d.log.Append(func(w *wal.Writer) {
		w.Record(func(dst []byte) []byte { return appendRecHeader(dst, recResync, shard) })
	}, func(err error) {
		if err != nil {
			d.failed(s, err)
		}
	})
}

// logReset appends a full re-seeding's start for shard, whose log goes
// on from base; appended in order before the seeding's entries.
func (d *durable) logReset(s *Server, shard int, base uint64) {
	// Partial from now on, not only once the record is written: a
	// snapshot between the two would record the table being re-seeded
	// as the complete copy at the old index, and cover the reset record
	// (snapshot.go checks after its rotation).
	d.mu.Lock()
	d.partial[shard] = copyReseeding
	d.mu.Unlock()
	d.log.Append(func(w *wal.Writer) {
		w.Record(func(dst []byte) []byte {
			return binary.BigEndian.AppendUint64(appendRecHeader(dst, recReset, shard), base)
		})
	}, func(err error) {
		if err != nil {
			d.failed(s, err)
			return
		}
		d.set(shard, base)
	})
}
