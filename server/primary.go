package server

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"ftkv/wire"
)

// wreq is a client write on its way through a shard's sequencer. Its
// slices are private copies (gnet's buffers are reused).
type wreq struct {
	c      gnet.Conn
	id     uint64
	op     wire.Op
	flags  uint8
	client uint64
	seq    uint64
	floor  uint64
	rec    rec // holds key and value; a put's record ready for the table
	key    string
	value  []byte
	aux    []byte
}

// entry is a sequenced write waiting for the secondary's acknowledgement.
// It is the client's request (one allocation per write) plus its effect.
type entry struct {
	wreq
	index uint64
	val   []byte
	del   bool
	noop  bool
	out   *outcome
	// The connections waiting for the answer: the request's own (wreq.c
	// and id; c is nil once answered) and any retry that arrived while the
	// write was in flight. Guarded by the primary's lock.
	retries []waiter
}

// waiter is a connection waiting for a write's answer.
type waiter struct {
	c  gnet.Conn
	id uint64
}

// answerWaiters answers every connection waiting for e, with the
// record's answer (refuse == "") or UNAVAILABLE and refuse, and forgets
// them (a retry that comes later waits anew). It returns how many it
// answered; the caller holds the primary's lock.
func (e *entry) answerWaiters(rb *replyBatch, refuse string) int {
	n := 0
	if e.c != nil {
		rb.add(e.c, e.answerFor(e.id, refuse))
		n++
	}
	for _, w := range e.retries {
		rb.add(w.c, e.answerFor(w.id, refuse))
		n++
	}
	e.c, e.retries = nil, nil
	return n
}

func (e *entry) answerFor(id uint64, refuse string) *wire.Frame {
	if refuse != "" {
		return &wire.Frame{Op: wire.OpPut, ID: id, Status: wire.StatusUnavailable, Value: []byte(refuse)}
	}
	return answer(0, id, e.out)
}

// pend is the newest not-yet-committed value of a key, so that CAS and
// Append sequenced behind an in-flight write build on it.
type pend struct {
	val   []byte
	del   bool
	index uint64
}

// primary runs the write path of one shard this server leads:
//
//	event loop: sequence (dedup, compute, log index) -> link to secondary
//	ack reader: commit to table -> answer the client (AsyncWrite)
//
// The event loop sequences every write of one read batch at once and tries
// a non-blocking write to the link; what the socket does not take goes to
// the link's writer goroutine, so a loop never blocks. Writes are batched on
// one ordered link; a write is applied to the table, and so visible to
// reads, only after the secondary acknowledged it.
type primary struct {
	s     *Server
	shard int
	t     *table
	log   zerolog.Logger

	stop chan struct{}

	mu        sync.Mutex // pending, inflight, nextIndex, link
	pending   map[string]pend
	inflight  []*entry
	nextIndex uint64
	committed uint64
	link      *replLink
	waitLink  bool // a secondary is configured: never commit alone
	sec       target
	epoch     uint64
	drained   *sync.Cond
	frozen    bool      // hand-back in progress: no new writes
	freezeGen uint64    // only the latest freeze's timer may lift it
	notBefore time.Time // the former primary's lease ends here

	// linkLease: the secondary's ping answers let us serve.
	linkLease *leaseTracker
	seedAcks  chan uint64
	seedJob   *seedJob
}

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
	p.mu.Unlock()
	go func() {
		j.err = p.seed(p.s.cfg.Timing.SeedLimit)
		if j.err != nil {
			p.log.Error().Err(j.err).Str("secondary", sec.addr).Msg("re-seeding failed")
		}
		close(j.done)
	}()
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
		if time.Now().After(deadline) || time.Since(deadline.Add(-timeout)) > p.s.cfg.Timing.SeedStart {
			return fmt.Errorf("no re-seeding of incarnation %d started here", inc)
		}
		select {
		case <-p.stop:
			return errors.New("no longer primary")
		case <-time.After(p.s.cfg.Timing.Poll):
		}
	}
	select {
	case <-j.done:
		return j.err
	case <-time.After(timeout):
		return fmt.Errorf("re-seeding still running after %s", timeout)
	}
}

// canServe reports whether the shard may be served now: not frozen, past
// the former primary's lease, and holding a lease of our own (from the
// coordinator or, when it is unreachable, from our secondary).
func (p *primary) canServe(now time.Time) bool {
	if now.Before(p.notBefore) {
		return false
	}
	ns := now.UnixNano()
	return p.s.coordLease.valid(ns) || p.linkLease.valid(ns)
}

// newPrimary leads shard, whose log so far ends at base (the index of the
// last write the table holds), serving from notBefore on.
func newPrimary(s *Server, shard int, t *table, base uint64, notBefore time.Time) *primary {
	p := &primary{
		s:         s,
		shard:     shard,
		t:         t,
		log:       s.log.With().Int("shard", shard).Logger(),
		stop:      make(chan struct{}),
		pending:   make(map[string]pend),
		nextIndex: base,
		committed: base,
		notBefore: notBefore,
		linkLease: newLeaseTracker(s.cfg.Timing.Lease),
		seedAcks:  make(chan uint64, 64),
	}
	p.drained = sync.NewCond(&p.mu)
	go p.pinger()
	return p
}

// pinger renews the lease through the secondary every Lease/4.
func (p *primary) pinger() {
	t := time.NewTicker(p.s.cfg.Timing.Ping)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		l := p.link
		if l != nil {
			seq := p.linkLease.sending(time.Now())
			l.queue(wire.Append(nil, &wire.Frame{Op: wire.OpPing, ID: seq}))
		}
		p.mu.Unlock()
		if l != nil {
			l.flushSoon()
		}
		p.releaseStuck(time.Now())
	}
}

// releaseStuck answers the writes in flight UNAVAILABLE once the lease is
// gone: cut off from both the coordinator and its secondary, this primary
// can commit nothing, and the shard has (or soon will have) another
// primary. The clients retry there with the same sequence numbers; the
// new primary applies each write once (it holds the outcome if the write
// reached it). The writes stay in flight here, so a link that comes back
// still commits them, and a retry that comes back here waits for that.
func (p *primary) releaseStuck(now time.Time) {
	replies := newReplyBatch()
	defer replies.release()
	p.mu.Lock()
	if len(p.inflight) == 0 || p.canServe(now) {
		p.mu.Unlock()
		return
	}
	n := 0
	for _, e := range p.inflight {
		n += e.answerWaiters(replies, "primary lost its lease; retry")
	}
	p.mu.Unlock()
	if n > 0 {
		p.log.Warn().Int("writes", n).Msg("lease lost with writes in flight; told their clients to retry elsewhere")
	}
	replies.flush(nil)
}

func (p *primary) onPingAck(seq uint64) { p.linkLease.answered(seq, true) }

func (p *primary) onSeedAck(seq uint64) {
	select {
	case p.seedAcks <- seq:
	default:
	}
}

// sameSecondary reports whether p already replicates to sec over a live link.
func (p *primary) sameSecondary(sec target) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sec.addr == "" {
		return p.sec.addr == "" && !p.waitLink
	}
	return p.link != nil && !p.link.broken() && p.sec.addr == sec.addr && p.sec.id == sec.id && p.sec.inc == sec.inc
}

// freeze stops new writes, waits (up to timeout) until every write in
// flight is committed and returns the last log index. The freeze lifts by
// itself after hold unless a view removes the shard first.
func (p *primary) freeze(timeout, hold time.Duration) (uint64, error) {
	p.mu.Lock()
	p.frozen = true
	p.freezeGen++
	gen := p.freezeGen
	p.mu.Unlock()
	time.AfterFunc(hold, func() {
		p.mu.Lock()
		if p.freezeGen == gen {
			p.frozen = false // the hand-back never came: serve again
		}
		p.mu.Unlock()
	})
	p.drain(time.Now().Add(timeout))
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.inflight) > 0 {
		return 0, fmt.Errorf("%d writes still in flight after %s", len(p.inflight), timeout)
	}
	return p.nextIndex, nil
}

// seed sends a snapshot of the table to the (re-seeding) secondary, in
// large batches with a bounded number in flight, and returns once the
// secondary has acknowledged all of it. Writes keep flowing on the same
// link meanwhile; per-key versions make the order irrelevant.
func (p *primary) seed(timeout time.Duration) error {
	p.mu.Lock()
	l := p.link
	p.mu.Unlock()
	if l == nil {
		return errors.New("no replication link")
	}
	for {
		select {
		case <-p.seedAcks:
			continue
		default:
		}
		break
	}
	deadline := time.After(timeout)
	const batchBytes = 256 << 10
	const window = 64
	var sent, acked uint64
	total := uint64(p.t.len()) // lets the receiver size its table
	start := time.Now()
	entries := 0
	var waited time.Duration
	wait := func(upTo uint64) error {
		w0 := time.Now()
		defer func() { waited += time.Since(w0) }()
		for acked < upTo {
			select {
			case a := <-p.seedAcks:
				if a > acked {
					acked = a
				}
			case <-l.dead:
				return errors.New("replication link lost during re-seeding")
			case <-p.stop:
				return errors.New("no longer primary")
			case <-deadline:
				return fmt.Errorf("re-seeding not acknowledged within %s", timeout)
			}
		}
		return nil
	}
	send := func(batch []byte, done bool) error {
		sent++
		f := &wire.Frame{Op: wire.OpSeed, ID: sent, Value: batch, Floor: total}
		if done {
			f.Flags = wire.FlagSeedDone
		}
		l.queueFrame(f)
		l.flushSoon()
		if sent > window {
			return wait(sent - window)
		}
		return nil
	}
	// Encode one stripe at a time under its read lock, then send with
	// the lock released: waiting for acknowledgements must never hold up
	// the writers of that stripe.
	// send copies each batch into the link's buffer, so the batch buffers
	// are reused: seeding a large table allocates almost nothing.
	var free [][]byte
	take := func() []byte {
		if n := len(free); n > 0 {
			b := free[n-1]
			free = free[:n-1]
			return b[:0]
		}
		return make([]byte, 0, batchBytes+64<<10)
	}
	batch := take()
	for i := 0; i < stripes; i++ {
		var chunks [][]byte
		p.t.eachIn(i, func(k string, v []byte, ver uint64) {
			batch = wire.AppendSeedEntryString(batch, k, v, ver)
			entries++
			if len(batch) >= batchBytes {
				chunks = append(chunks, batch)
				batch = take()
			}
		})
		for _, c := range chunks {
			if err := send(c, false); err != nil {
				return err
			}
			free = append(free, c)
		}
	}
	// The clients' remembered outcomes, so a write retried after the
	// hand-back is still applied only once.
	for _, chunk := range p.s.dd.snapshot() {
		sent++
		l.queueFrame(&wire.Frame{Op: wire.OpSeed, ID: sent, Flags: wire.FlagDedup, Value: chunk})
		l.flushSoon()
	}
	if err := send(batch, true); err != nil {
		return err
	}
	if err := wait(sent); err != nil {
		return err
	}
	el := time.Since(start)
	p.log.Info().Int("entries", entries).Int64("took_ms", el.Milliseconds()).Int64("waiting_for_acks_ms", waited.Milliseconds()).Uint64("batches", sent).
		Float64("entries_per_sec", float64(entries)/el.Seconds()).Msg("re-seeding sent")
	return nil
}

// sequence assigns log indexes to a batch of writes and ships them to the
// secondary in one write.
// sequence runs on the event loop loop that read batch.
func (p *primary) sequence(batch []*entry, loop gnet.EventLoop) {
	replies := newReplyBatch()
	defer replies.release()
	p.mu.Lock()
	if p.frozen || !p.canServe(time.Now()) {
		p.mu.Unlock()
		for _, r := range batch {
			replies.add(r.c, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusUnavailable,
				Value: []byte("shard is changing hands; retry")})
		}
		replies.flush(loop)
		return
	}
	first := p.nextIndex + 1
	link := p.link
	for _, r := range batch {
		var o *outcome
		if r.client != 0 {
			var cl claim
			o, cl = p.s.dd.claim(r.client, r.seq, r.floor)
			switch cl {
			case claimStale:
				replies.add(r.c, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusBadRequest,
					Value: []byte("sequence number below the client's own floor")})
				continue
			case claimDone:
				replies.add(r.c, answer(r.op, r.id, o))
				continue
			case claimInFlight:
				p.waitFor(o, r, replies)
				continue
			}
		} else {
			o = &outcome{}
		}
		e := p.apply(r, o)
		p.nextIndex++
		e.index = p.nextIndex
		if !e.noop {
			p.pending[e.key] = pend{val: e.val, del: e.del, index: e.index}
		}
		p.inflight = append(p.inflight, e)
		if link != nil {
			// (Without a link, reconnect sends the inflight entries.)
			link.queueRepl(p, e)
		}
	}
	last := p.nextIndex
	p.mu.Unlock()
	replies.flush(loop)
	if last < first {
		return
	}
	if link == nil {
		if !p.waitLink {
			// No secondary (a single-server cluster): commit at once.
			p.commitUpTo(last, loop)
		}
		return
	}
	link.flushSoon()
}

// waitFor makes the retry r wait for the write in flight whose record is o;
// the caller holds p.mu. Retries are rare, so the entry is searched for.
// A record in flight that is not this primary's belongs to one that has
// stopped leading the shard: the client retries.
func (p *primary) waitFor(o *outcome, r *entry, replies *replyBatch) {
	for i := len(p.inflight) - 1; i >= 0; i-- {
		if e := p.inflight[i]; e.out == o {
			e.retries = append(e.retries, waiter{r.c, r.id})
			return
		}
	}
	replies.add(r.c, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusUnavailable,
		Value: []byte("shard changed hands; retry")})
}

// apply computes the effect of the request e on the newest value of its
// key, into e.
func (p *primary) apply(e *entry, o *outcome) *entry {
	r := &e.wreq
	var cur []byte
	var ok bool
	if r.op == wire.OpAppend || r.op == wire.OpCAS {
		cur, ok = p.latest(r.key) // a put or delete does not depend on it
	}
	e.out = o
	o.status = wire.StatusOK
	rc := r.rec
	e.rec = nil // the request's record goes to the table only for a put
	switch r.op {
	case wire.OpPut:
		e.val, e.rec = r.value, rc
	case wire.OpDelete:
		e.del = true
	case wire.OpAppend:
		nv := make([]byte, len(cur)+len(r.value))
		copy(nv, cur)
		copy(nv[len(cur):], r.value)
		e.val = nv
	case wire.OpCAS:
		match := false
		if r.flags&wire.FlagOldPresent == 0 {
			match = !ok
		} else {
			match = ok && bytes.Equal(cur, r.aux)
		}
		if match {
			e.val = r.value
		} else {
			e.noop = true
			o.status = wire.StatusMismatch
			if ok {
				o.flags = wire.FlagOldPresent
				o.value = cur
			}
		}
	}
	if e.val == nil && !e.del && !e.noop {
		e.val = []byte{}
	}
	return e
}

func (p *primary) latest(key string) ([]byte, bool) {
	if pd, ok := p.pending[key]; ok {
		return pd.val, !pd.del
	}
	return p.t.get([]byte(key))
}

// commitUpTo applies every in-flight entry with index <= idx to the table,
// in order, and answers the clients waiting for them.
func (p *primary) commitUpTo(idx uint64, loop gnet.EventLoop) {
	replies := newReplyBatch()
	defer replies.release()
	p.mu.Lock()
	n := 0
	for n < len(p.inflight) && p.inflight[n].index <= idx {
		n++
	}
	batch := p.inflight[:n]
	for _, e := range batch {
		if !e.noop {
			// merge, not set: never let a late commit overwrite a newer
			// version (the table may already serve another primary).
			if e.rec != nil {
				p.t.mergeRec(e.rec, e.index, false)
			} else {
				p.t.merge(e.key, e.val, e.index, e.del, false)
			}
			if pd, ok := p.pending[e.key]; ok && pd.index == e.index {
				delete(p.pending, e.key)
			}
		}
		p.committed = e.index
	}
	for _, e := range batch {
		e.out.done.Store(true)
		e.answerWaiters(replies, "")
	}
	rest := copy(p.inflight, p.inflight[n:])
	clear(p.inflight[rest:])
	p.inflight = p.inflight[:rest]
	if len(p.inflight) == 0 {
		p.drained.Broadcast()
	}
	p.mu.Unlock()
	replies.flush(loop)
}

// answer builds the reply frame of a finished write for request id.
func answer(op wire.Op, id uint64, o *outcome) *wire.Frame {
	if op == 0 {
		op = wire.OpPut // the op is not needed by clients; answers match by id
	}
	return &wire.Frame{Op: op, ID: id, Status: o.status, Flags: o.flags, Value: o.value}
}

// drain waits until every sequenced write is committed or deadline passes.
func (p *primary) drain(deadline time.Time) {
	t := time.AfterFunc(time.Until(deadline), func() {
		p.mu.Lock()
		p.drained.Broadcast()
		p.mu.Unlock()
	})
	defer t.Stop()
	p.mu.Lock()
	for len(p.inflight) > 0 && time.Now().Before(deadline) {
		p.drained.Wait()
	}
	p.mu.Unlock()
}

func (p *primary) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.mu.Lock()
	if p.link != nil {
		p.link.close()
	}
	last := p.nextIndex
	orphans := p.inflight
	p.inflight = nil
	p.pending = make(map[string]pend)
	p.mu.Unlock()
	p.s.noteIndex(p.shard, last)
	// Writes still waiting for their secondary will never be answered
	// here: tell their clients to retry (with the same sequence number)
	// at the shard's new primary, and forget their unfinished records.
	replies := newReplyBatch()
	defer replies.release()
	for _, e := range orphans {
		e.answerWaiters(replies, "shard changed hands; retry")
		if e.client != 0 {
			p.s.dd.forget(e.client, e.seq)
		}
	}
	replies.flush(nil)
}

// connect (re)establishes the replication link to sec (none: addr "") at
// epoch, retrying until timeout (the secondary may not have the view yet).
func (p *primary) connect(sec target, epoch uint64, timeout time.Duration) error {
	if p.sameSecondary(sec) {
		p.mu.Lock()
		p.epoch = epoch
		p.mu.Unlock()
		return nil
	}
	p.mu.Lock()
	old := p.link
	p.link = nil
	p.sec = sec
	p.epoch = epoch
	// While the link is down, writes stay in flight (unacknowledged) and
	// are sent when it is back; only a shard without a secondary commits
	// alone.
	p.waitLink = sec.addr != ""
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
	if sec.addr == "" {
		p.mu.Lock()
		last := p.nextIndex
		p.mu.Unlock()
		p.commitUpTo(last, nil)
		return nil
	}
	deadline := time.Now().Add(timeout)
	backoff := p.s.cfg.Timing.RetryMin
	refused := 0
	for {
		select {
		case <-p.stop:
			return errors.New("no longer primary")
		default:
		}
		p.mu.Lock()
		base := p.committed
		p.mu.Unlock()
		l, acked, err := dialLink(p, sec.addr, epoch, base)
		if err == nil {
			p.mu.Lock()
			// Resend what the secondary has not applied yet, in order,
			// ahead of anything sequenced from now on.
			var buf []byte
			for _, e := range p.inflight {
				if e.index > acked {
					buf = p.appendRepl(buf, e)
				}
			}
			l.queue(buf)
			p.link = l
			p.mu.Unlock()
			l.flushSoon()
			if acked > 0 {
				p.commitUpTo(acked, nil)
			}
			p.log.Info().Str("secondary", sec.addr).Uint64("epoch", epoch).Msg("replication link up")
			return nil
		}
		// A secondary named in a view was listening when it was named:
		// "connection refused" means it died; do not hold the view up.
		if errors.Is(err, syscall.ECONNREFUSED) {
			refused++
		}
		if time.Now().After(deadline) || refused >= 3 {
			return fmt.Errorf("replication link to %s: %w", sec.addr, err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, p.s.cfg.Timing.RetryMax)
	}
}

func (p *primary) appendRepl(buf []byte, e *entry) []byte {
	o := e.out
	f := wire.Frame{Op: wire.OpRepl, ID: e.index, Epoch: p.epoch, Status: o.status, Flags: o.flags,
		Client: e.client, Seq: e.seq, Floor: e.floor, Key: []byte(e.key), Value: e.val}
	if e.del {
		f.Flags |= wire.FlagDelete
	}
	if e.noop {
		f.Flags |= wire.FlagNoop
		f.Value = o.value
	}
	return wire.Append(buf, &f)
}

// reconnect replaces a failed link while the view stays the same.
func (p *primary) reconnect(failed *replLink) {
	p.mu.Lock()
	if p.link != failed {
		p.mu.Unlock()
		return
	}
	sec, epoch := p.sec, p.epoch
	p.mu.Unlock()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		p.mu.Lock()
		moved := p.sec != sec || (p.link != nil && p.link != failed)
		p.mu.Unlock()
		if moved {
			return // a newer view chose the secondary
		}
		if err := p.connect(sec, epoch, p.s.cfg.Timing.Handshake); err == nil {
			return
		}
		p.log.Warn().Str("secondary", sec.addr).Msg("secondary unreachable; writes wait")
		time.Sleep(p.s.cfg.Timing.Heartbeat)
	}
}
