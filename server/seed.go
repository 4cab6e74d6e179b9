package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"ftkv/wire"
)

// seedJob is one re-seeding of a secondary incarnation.
type seedJob struct {
	inc  uint64
	done chan struct{}
	err  error
}

// startSeed starts re-seeding sec unless that incarnation is already being
// (or has been) seeded by this primary.
func (p *primary) startSeed(sec target) {
	p.mu.Lock()
	if j := p.seedJob; j != nil && j.inc == sec.inc {
		p.mu.Unlock()
		return
	}
	j := &seedJob{inc: sec.inc, done: make(chan struct{})}
	p.seedJob = j
	partial := p.resyncInc == sec.inc
	p.mu.Unlock()
	go func() {
		deadline := time.Now().Add(p.tm.SeedLimit)
		for {
			if partial {
				j.err = p.finishResync(j, time.Until(deadline))
			} else {
				j.err = p.seed(j, time.Until(deadline))
			}
			if !errors.Is(j.err, errLinkLost) {
				break
			}
			// The link broke (or was being replaced) under the job: the
			// reconnected link resends from where the secondary is (its
			// state, and our log, survive a reconnect), so the job goes
			// on over it rather than leave the secondary re-seeding for
			// good. The reconnect may have turned a resync into a full
			// re-seeding (our log no longer held the writes).
			var ok bool
			if partial, ok = p.awaitRelink(j, deadline); !ok {
				break
			}
			p.log.Info().Str("secondary", sec.addr).Bool("partial", partial).Msg("re-seeding goes on over the reconnected link")
		}
		if j.err != nil {
			p.log.Error().Err(j.err).Str("secondary", sec.addr).Msg("re-seeding failed")
		}
		p.metrics().seedResult(j.err)
		close(j.done)
	}()
}

// errLinkLost: the replication link broke during a re-seeding (or there
// was none when it started).
var errLinkLost = errors.New("replication link lost during re-seeding")

// errSeedSuperseded: the secondary changed since the job started (even
// if it changed back: a new job re-seeds it).
var errSeedSuperseded = errors.New("re-seeding superseded: the secondary changed")

// jobLink returns the link job j sends on: the current one, unless the
// secondary changed since j started.
func (p *primary) jobLink(j *seedJob) (*replLink, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.seedJob != j:
		return nil, errSeedSuperseded
	case p.link == nil:
		return nil, errLinkLost
	}
	return p.link, nil
}

// awaitRelink waits until the secondary of job j has a live link again
// and reports whether it continues a partial resync. It waits while an
// attempt to connect the link is under way (dial, HELLO, reading our log
// for a resync, enrolling: on a loaded machine that is longer than one
// HELLO exchange), never past deadline. A link that stays down fails the
// job — an attempt that gave up, or none under way for a Handshake — so
// that the coordinator stops waiting for it (a secondary it cannot reach
// is dropped or replaced, and the shard's writes, waiting for that link,
// go on).
func (p *primary) awaitRelink(j *seedJob, deadline time.Time) (partial, ok bool) {
	p.mu.Lock()
	fails := p.connectFails
	p.mu.Unlock()
	idle := time.Now().Add(p.tm.Handshake)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		same := p.seedJob == j
		live := p.link != nil && !p.link.broken()
		partial = p.resyncInc == j.inc
		trying, failed := p.connecting > 0, p.connectFails != fails
		p.mu.Unlock()
		switch {
		case !same:
			return false, false
		case live:
			return partial, true
		case failed:
			return false, false
		case trying:
			idle = time.Now().Add(p.tm.Handshake)
		case time.Now().After(idle):
			return false, false
		}
		select {
		case <-p.stop:
			return false, false
		case <-time.After(p.tm.Poll):
		}
	}
	return false, false
}

// seedResult waits up to timeout for the re-seeding of incarnation inc.
func (p *primary) seedResult(inc uint64, timeout time.Duration) error {
	// The view that starts the job may still be connecting the link.
	deadline := time.Now().Add(timeout)
	var j *seedJob
	for {
		p.mu.Lock()
		j = p.seedJob
		p.mu.Unlock()
		if j != nil && j.inc == inc {
			break
		}
		if time.Now().After(deadline) || time.Since(deadline.Add(-timeout)) > p.tm.SeedStart {
			return fmt.Errorf("no re-seeding of incarnation %d started here", inc)
		}
		select {
		case <-p.stop:
			return errors.New("no longer primary")
		case <-time.After(p.tm.Poll):
		}
	}
	select {
	case <-j.done:
		return j.err
	case <-time.After(timeout):
		return fmt.Errorf("re-seeding still running after %s", timeout)
	}
}

// seed sends a snapshot of the table to the (re-seeding) secondary, in
// large batches with a bounded number in flight, and returns once the
// secondary has acknowledged all of it. Writes keep flowing on the same
// link meanwhile; per-key versions make the order irrelevant.
func (p *primary) seed(j *seedJob, timeout time.Duration) error {
	l, err := p.jobLink(j)
	if err != nil {
		return err
	}
	for {
		select {
		case <-p.seedAcks:
			continue
		default:
		}
		break
	}
	// Every write committed by now is in the table, so in the snapshot:
	// the last frame tells the secondary its copy reaches that index. (A
	// write may commit between the link's HELLO and its first frame when
	// the shard was led alone; the stream then starts above the index the
	// HELLO gave, and without this the first write after the re-seeding
	// would look like a gap, for good.)
	p.mu.Lock()
	covered := p.committed
	p.mu.Unlock()
	ss := &seedSender{l: l, acks: p.seedAcks, stop: p.stop, deadline: time.After(timeout), timeout: timeout,
		total: uint64(p.t.len()), met: p.metrics(), covered: covered}
	ss.met.seedStarted(ss)
	defer ss.met.seedEnded(ss)
	start := time.Now()
	last, err := ss.sendTable(p.t)
	if err != nil {
		return err
	}
	// The clients' remembered outcomes, so a write retried after the
	// hand-back is still applied only once.
	for _, chunk := range p.dd.snapshot(p.shard) {
		ss.sent++
		l.queueFrame(&wire.Frame{Op: wire.OpSeed, ID: ss.sent, Flags: wire.FlagDedup, Value: chunk})
		l.flushSoon()
	}
	if err := ss.send(last, true); err != nil {
		return err
	}
	if err := ss.wait(ss.sent); err != nil {
		return err
	}
	el := time.Since(start)
	p.log.Info().Int("entries", ss.entries).Int64("took_ms", el.Milliseconds()).Int64("waiting_for_acks_ms", ss.waited.Milliseconds()).
		Uint64("batches", ss.sent).Float64("entries_per_sec", float64(ss.entries)/el.Seconds()).Msg("re-seeding sent")
	return nil
}

// seedApplied, when a test sets it, runs on the secondary's event loop
// after it applied each SEED frame of table entries: a slow secondary.
var seedApplied atomic.Pointer[func()]

const seedBatchBytes = 256 << 10 // table entries per SEED frame, about

// seedWindow is how many SEED frames may be sent and not yet
// acknowledged (DESIGN, *Re-seeding while serving*).
const seedWindow = 8

// seedWindowTest, when not zero, replaces seedWindow: a measurement
// compares windows.
var seedWindowTest atomic.Uint64

func sendWindow() uint64 {
	if w := seedWindowTest.Load(); w != 0 {
		return w
	}
	return seedWindow
}

// seedSender is one re-seeding's sending side.
type seedSender struct {
	l        *replLink
	acks     <-chan seedAck // acknowledged SEED frames
	stop     <-chan struct{}
	deadline <-chan time.Time
	timeout  time.Duration
	total    uint64 // keys in the table when the snapshot began (lets the receiver size its table)
	covered  uint64 // the log index every write of the snapshot is at or below (sent with the last frame)

	sent, acked uint64 // SEED frames, numbered from 1
	entries     int
	reported    int            // entries counted in the metrics so far
	met         *serverMetrics // nil: none
	waited      time.Duration  // waiting for acknowledgements
	free        [][]byte       // batch buffers to reuse
}

// sendTable sends t one stripe at a time, encoded under the stripe's read
// lock and sent with the lock released: waiting for acknowledgements must
// never hold up the writers of that stripe. It returns the last, partly
// filled batch, not sent yet.
func (ss *seedSender) sendTable(t *table) ([]byte, error) {
	batch := ss.take()
	for i := 0; i < stripes; i++ {
		var chunks [][]byte
		t.eachIn(i, func(k string, v []byte, ver uint64) {
			batch = wire.AppendSeedEntryString(batch, k, v, ver)
			ss.entries++
			if len(batch) >= seedBatchBytes {
				chunks = append(chunks, batch)
				batch = ss.take()
			}
		})
		for _, c := range chunks {
			if err := ss.send(c, false); err != nil {
				return nil, err
			}
			ss.free = append(ss.free, c)
		}
	}
	return batch, nil
}

// take returns an empty batch buffer. send copies each batch into the
// link's buffer, so batches are reused: seeding a large table allocates
// almost nothing.
func (ss *seedSender) take() []byte {
	if n := len(ss.free); n > 0 {
		b := ss.free[n-1]
		ss.free = ss.free[:n-1]
		return b[:0]
	}
	return make([]byte, 0, seedBatchBytes+64<<10)
}

// send queues one SEED frame of table entries (done: the last one) and
// waits while more than seedWindow are unacknowledged.
func (ss *seedSender) send(batch []byte, done bool) error {
	ss.sent++
	f := &wire.Frame{Op: wire.OpSeed, ID: ss.sent, Value: batch, Floor: ss.total}
	if done {
		f.Flags, f.Seq = wire.FlagSeedDone, ss.covered
	}
	ss.l.queueFrame(f)
	ss.l.flushSoon()
	ss.met.seedProgress(ss)
	if w := sendWindow(); ss.sent > w {
		return ss.wait(ss.sent - w)
	}
	return nil
}

// wait returns once SEED frame upTo is acknowledged.
func (ss *seedSender) wait(upTo uint64) error {
	w0 := time.Now()
	defer func() { ss.waited += time.Since(w0) }()
	for ss.acked < upTo {
		select {
		case a := <-ss.acks:
			if a.l == ss.l && a.seq > ss.acked {
				ss.acked = a.seq
			}
		case <-ss.l.dead:
			return errLinkLost
		case <-ss.stop:
			return errors.New("no longer primary")
		case <-ss.deadline:
			return fmt.Errorf("re-seeding not acknowledged within %s", ss.timeout)
		}
	}
	return nil
}

// applySeed applies one SEED frame of a re-seeding (the receiver's side);
// the caller holds st.mu.
func (st *secState) applySeed(f *wire.Frame) error {
	if f.Flags&wire.FlagSeedReset != 0 {
		// The partial resync we offered was refused: a full one follows.
		if len(f.Value) != 8 {
			return fmt.Errorf("re-seeding reset of %d bytes", len(f.Value))
		}
		st.resync, st.seeding = false, true
		st.srv.resetCopy(st, binary.BigEndian.Uint64(f.Value))
		st.log.Info().Int("shard", st.shard).Uint64("base", st.last).Msg("partial resync refused: dropped the recovered copy for a full re-seeding")
		return nil
	}
	if !st.seeding {
		// This copy is complete (its link was set up while it served) and
		// applies every write as it comes: a snapshot read earlier could
		// only bring back what was deleted since, without a tombstone
		// here. (A primary re-seeds it anyway when the view shows it
		// re-seeding another shard.)
		if f.Flags&wire.FlagSeedDone != 0 {
			st.log.Info().Int("shard", st.shard).Msg("re-seeding ignored: this copy is complete")
		}
		return nil
	}
	// Applied before it is logged, as the replication stream is: once the
	// log has written a record, the tables hold it (snapshot.go).
	if f.Flags&wire.FlagDedup != 0 {
		if err := st.dd.restore(f.Value, originOf(st.shard)); err != nil {
			return err
		}
		if st.dur != nil {
			st.dur.logSeed(st.srv, st.shard, recDedup, f.Value)
		}
		return nil
	}
	if f.ID == 1 {
		st.t.reserve(int(f.Floor))
	}
	// Each entry is copied into a record of its own (keys and values alias
	// the read buffer here).
	b := f.Value
	n := 0
	for ; len(b) > 0; n++ {
		k, v, ver, rest, err := wire.NextSeedEntry(b)
		if err != nil {
			return err
		}
		st.t.merge(unsafe.String(unsafe.SliceData(k), len(k)), v, ver, false, true)
		b = rest
	}
	if st.srv != nil {
		st.srv.met.seedReceived(n)
	}
	if hook := seedApplied.Load(); hook != nil {
		(*hook)()
	}
	if st.dur != nil {
		st.dur.logSeed(st.srv, st.shard, recSeed, f.Value)
	}
	if f.Flags&wire.FlagSeedDone != 0 {
		// The snapshot holds every write up to f.Seq: the stream goes on
		// after it, even from above the index the link's HELLO gave.
		st.last = max(st.last, f.Seq)
		st.seeding, st.resync = false, false
		st.t.dropTombstones()
		if st.dur != nil {
			st.dur.logSeedDone(st.srv, st.shard, st.last, nil)
		}
		st.log.Info().Int("shard", st.shard).Int("keys", st.t.len()).Msg("re-seeding complete")
	}
	return nil
}
