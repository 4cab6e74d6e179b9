package server

import (
	"encoding/binary"
	"errors"
	"time"

	"ftkv/internal/wal"
	"ftkv/wire"
)

// Partial resync (issue 13): a respawned server that recovered a complete
// copy of a shard from its log offers that copy's log index L in its
// answer to the link's HELLO (wire.FlagResync). The primary looks for L in
// its own log: if the log holds L and every write of the shard after it
// (no snapshot truncated them, no re-seeding came between), it sends those writes as they were logged, then its writes in
// flight, and the re-seeding job only has to mark the end; otherwise it
// sends wire.FlagSeedReset and a full re-seeding follows. A copy whose
// index is not in the primary's history (a former primary's writes that
// never reached the promoted secondary: LineageGap keeps them out) is
// never patched.

// resyncTries bounds how often the log is read again because writes were
// committed while it was being read.
const resyncTries = 3

// resyncMaxBytes bounds the writes a partial resync sends from the log.
// They are read into memory and queued on the link in one piece (the
// writes in flight must follow them, in order), so a long outage behind a
// large log (which grows to the size of the last snapshot before the
// next) would cost the primary that much memory at once; past the bound
// a full re-seeding, which streams the table with a bounded window, is
// the cheaper catch-up anyway. Redis bounds its partial resync the same
// way (repl-backlog-size). A variable so tests can lower it.
var resyncMaxBytes = 64 << 20

// errResyncTooLarge stops reading the log once the writes after the
// secondary's copy pass resyncMaxBytes.
var errResyncTooLarge = errors.New("the writes after the secondary's copy pass the partial resync's bound")

// resyncOrReset returns, with p.mu held, the frames that bring a copy at
// index from up to date and the index they reach, or the reset of a full
// re-seeding and the base it starts from.
func (p *primary) resyncOrReset(sec target, from uint64) ([]byte, uint64) {
	start := time.Now()
	why := errStillCommitting
	for try := 0; try < resyncTries; try++ {
		frames, upTo, n, err := p.readResync(from)
		if err != nil {
			why = err
			break
		}
		p.mu.Lock()
		if p.jumped && p.committed == p.startedAt && upTo == p.startedAt-LineageGap {
			// Nothing committed since a promotion, whose indexes start
			// LineageGap above the last write its table held: the copy
			// reaches that write, so it is the table taken over, at
			// startedAt. (No record carries the jump: read as writes
			// still committing, every idle kill was re-seeded in full.)
			upTo = p.committed
		}
		// Everything committed is in the log (applied after it was
		// written); what is not yet is in flight.
		if p.committed <= upTo {
			p.resyncInc, p.resyncEntries, p.resyncCovers = sec.inc, n, upTo
			p.log.Info().Uint64("from", from).Uint64("to", upTo).Int("entries", n).Int("bytes", len(frames)).
				Int("reads", try+1).Float64("read_ms", float64(time.Since(start).Microseconds())/1000).Msg("partial resync: sending the writes after the secondary's copy from the log")
			return frames, upTo
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.resyncInc = 0
	base := p.committed
	p.log.Info().Err(why).Uint64("offered", from).Uint64("base", base).Msg("partial resync impossible: full re-seeding")
	return wire.Append(nil, &wire.Frame{Op: wire.OpSeed, Flags: wire.FlagSeedReset, Value: binary.BigEndian.AppendUint64(nil, base)}), base
}

// errStillCommitting: writes kept committing while the log was read, every
// time it was read.
var errStillCommitting = errors.New("writes kept committing while the log was read")

// errNotInLog: the log does not hold every write after the index a
// secondary offered (a snapshot truncated them, a re-seeding came
// between, or the index is not in this shard's history).
var errNotInLog = errors.New("the log does not hold the writes after the secondary's copy")

// readResync reads this shard's writes after index from out of the log:
// the frames (wire encoding, in order), the last index they reach and how
// many; an error when from is not a point of the log's history after
// which it holds every write, or they pass resyncMaxBytes.
func (p *primary) readResync(from uint64) ([]byte, uint64, int, error) {
	d := p.env.dur
	if d == nil || d.down() {
		return nil, 0, 0, errNotInLog
	}
	// A snapshot running meanwhile may remove the segments not read yet:
	// the read fails, and a full re-seeding follows.
	var out []byte
	upTo, n := from, 0
	found, broken := false, false
	var mark uint64 // the highest index a recSeedDone marked (see durable.go)
	err := d.log.ReadFrom(p.resyncStart(from), func(r []byte) error {
		if len(r) < 5 || int(binary.BigEndian.Uint32(r[1:])) != p.shard {
			return nil
		}
		body := r[5:]
		switch r[0] {
		case recReset:
			// A full re-seeding of this copy starts: what came before
			// is no longer its history.
			out, n, upTo, broken, mark = out[:0], 0, from, false, 0
			found = len(body) == 8 && binary.BigEndian.Uint64(body) == from
		case recSeedDone:
			if len(body) == 8 {
				idx := binary.BigEndian.Uint64(body)
				found = found || idx == from
				mark = max(mark, idx)
			}
		case recFrames:
			// Only each frame's index is read (wire.Frame's layout: 4
			// length, then the index at offset 8).
			for len(body) > 0 {
				if len(body) < wire.HeaderSize {
					return errors.New("bad frame in the log")
				}
				m := int(binary.BigEndian.Uint32(body)) + 4
				if m < wire.HeaderSize || m > len(body) {
					return errors.New("bad frame in the log")
				}
				id := binary.BigEndian.Uint64(body[8:])
				switch {
				case id == from:
					found = true
				case id > from && !found:
					broken = true // from is not in this history
				case id > from && id > upTo:
					if len(out)+m > resyncMaxBytes {
						return errResyncTooLarge
					}
					out = append(out, body[:m]...)
					upTo = id
					n++
				}
				body = body[m:]
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, wal.ErrNoStart):
		// No record could make from found: every frame of the shard is
		// above it (a snapshot truncated the log past it, say).
		return nil, 0, 0, errNotInLog
	case err != nil:
		return nil, 0, 0, err
	case !found || broken:
		return nil, 0, 0, errNotInLog
	}
	// A mark above the last write: the copy stands there with no write
	// between (a promotion's jump, or a resync that reached one). Frames
	// below it logged after it were read all the same (upTo counts
	// frames only until here).
	return out, max(upTo, mark), n, nil
}

// resyncStart reports whether a log record is where readResync may start
// reading for a copy at index from: a record of this shard at or before
// from (a frame, or a re-seeding's end), or the start of a full
// re-seeding (which clears whatever came before). It rests on this: a
// shard's indexes never go down along the log between two of its resets
// (a promotion jumps a LineageGap up, a hand-back continues; the end of a
// re-seeding may be logged just before frames of its own read, which
// reach that index). So nothing before such a record can change what
// readResync finds (starting too late could only make it miss from, and
// a full re-seeding follows), and every record that can make from found
// is such a record. After a short outage the log is read from its last
// segment or two instead of from its start (a log grows to the size of
// the last snapshot before the next).
func (p *primary) resyncStart(from uint64) func(r []byte) bool {
	return func(r []byte) bool {
		if len(r) < 5 || int(binary.BigEndian.Uint32(r[1:])) != p.shard {
			return false
		}
		body := r[5:]
		switch r[0] {
		case recReset:
			return true
		case recSeedDone:
			return len(body) == 8 && binary.BigEndian.Uint64(body) <= from
		case recFrames:
			// The first frame's index is the record's lowest.
			return len(body) >= wire.HeaderSize && binary.BigEndian.Uint64(body[8:]) <= from
		}
		return false
	}
}

// finishResync ends a partial resync: once the secondary acknowledges the
// end marker, sent after the writes from the log, it has them all.
func (p *primary) finishResync(j *seedJob, timeout time.Duration) error {
	l, err := p.jobLink(j)
	if err != nil {
		return err
	}
	p.mu.Lock()
	n, covers := p.resyncEntries, p.resyncCovers
	p.mu.Unlock()
	for drained := false; !drained; {
		select {
		case <-p.seedAcks:
		default:
			drained = true
		}
	}
	start := time.Now()
	ss := &seedSender{l: l, acks: p.seedAcks, stop: p.stop, deadline: time.After(timeout), timeout: timeout, covered: covers}
	if err := ss.send(nil, true); err != nil {
		return err
	}
	if err := ss.wait(ss.sent); err != nil {
		return err
	}
	p.log.Info().Int("entries", n).Int64("took_ms", time.Since(start).Milliseconds()).Msg("partial resync done")
	return nil
}
