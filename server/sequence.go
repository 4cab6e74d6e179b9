package server

import (
	"bytes"
	"fmt"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/connlimit"
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
	start  int64            // monoNow when it was read
	met    *serverMetrics   // counts its answers
	cost   int              // its bytes in the in-flight count (connlimit.Begin)
	lim    *connlimit.State // c's, to count its answer (connlimit.State.Done)
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
	c    gnet.Conn
	id   uint64
	cost int              // the retry's wreq.cost
	lim  *connlimit.State // and wreq.lim
}

// answerWaiters answers every connection waiting for e, with the
// record's answer (refuse == "") or UNAVAILABLE and refuse, and forgets
// them (a retry that comes later waits anew). It returns how many it
// answered; the caller holds the primary's lock.
func (e *entry) answerWaiters(rb *replyBatch, refuse string) int {
	n := 0
	if e.c != nil {
		rb.add(e.c, e.lim, e.cost, e.answerFor(e.id, refuse))
		n++
	}
	for _, w := range e.retries {
		rb.add(w.c, w.lim, w.cost, e.answerFor(w.id, refuse))
		n++
	}
	if e.met != nil {
		e.met.answerWrite(e, refuse, n)
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

// sequence assigns log indexes to a batch of writes and ships them to the
// secondary in one write. It runs on loop, the event loop that read batch.
func (p *primary) sequence(batch []*entry, loop gnet.EventLoop) {
	replies := newReplyBatch()
	defer replies.release()
	p.mu.Lock()
	if !p.env.diskOK() {
		p.mu.Unlock()
		for _, r := range batch {
			replies.add(r.c, r.lim, r.cost, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusUnavailable, Value: []byte(errDisk)})
			r.met.refused(&r.wreq, wire.StatusUnavailable)
		}
		replies.flush(loop)
		return
	}
	if p.frozen || p.closed || !p.canServe(time.Now()) {
		p.mu.Unlock()
		for _, r := range batch {
			replies.add(r.c, r.lim, r.cost, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusUnavailable,
				Value: []byte("shard is changing hands; retry")})
			r.met.refused(&r.wreq, wire.StatusUnavailable)
		}
		replies.flush(loop)
		return
	}
	first := p.nextIndex + 1
	link := p.link
	now := int64(-1) // the dedup clock, read once for the batch
	for _, r := range batch {
		var o *outcome
		if r.client != 0 {
			if now < 0 {
				now = p.dd.clock()
			}
			var cl claim
			o, cl = p.dd.claimAt(now, originOf(p.shard), r.client, r.seq, r.floor, r.flags)
			r.met.claimed(&r.wreq, cl, o)
			switch cl {
			case claimStale:
				replies.add(r.c, r.lim, r.cost, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusBadRequest,
					Value: []byte("sequence number below the client's own floor")})
				continue
			case claimTooMany:
				// Retryable: the client's floor rises as its oldest write
				// is answered (one stuck on a failing shard, say).
				replies.add(r.c, r.lim, r.cost, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusUnavailable,
					Value: []byte("too many writes in flight for this client; retry")})
				continue
			case claimExpired:
				replies.add(r.c, r.lim, r.cost, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusSessionExpired,
					Value: []byte("session expired: this write may be a retry of one whose outcome is forgotten; not applied")})
				continue
			case claimDone:
				replies.add(r.c, r.lim, r.cost, answer(r.op, r.id, o))
				continue
			case claimInFlight:
				p.waitFor(o, r, replies)
				continue
			}
		} else {
			o = &outcome{}
		}
		e := p.apply(r, o)
		if r.client != 0 && len(o.value) > 0 {
			p.dd.hold(r.client, r.seq, o) // (a MISMATCH answer's value)
		}
		p.nextIndex++
		e.index = p.nextIndex
		if !e.noop {
			p.pending[e.key] = pend{val: e.val, del: e.del, index: e.index}
		}
		p.inflight = append(p.inflight, e)
		if link != nil {
			// (Without a link, connect sends the inflight entries.)
			link.queueRepl(e, p.epoch)
		}
	}
	last := p.nextIndex
	alone := link == nil && !p.waitLink // read under p.mu: connect writes it
	p.mu.Unlock()
	replies.flush(loop)
	if last < first {
		return
	}
	if link == nil {
		if alone {
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
			e.retries = append(e.retries, waiter{r.c, r.id, r.cost, r.lim})
			return
		}
	}
	replies.add(r.c, r.lim, r.cost, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusUnavailable,
		Value: []byte("shard changed hands; retry")})
	r.met.refused(&r.wreq, wire.StatusUnavailable)
}

// apply computes the effect of the request e on the newest value of its
// key, into e.
func (p *primary) apply(e *entry, o *outcome) *entry {
	r := &e.wreq
	var cur []byte
	var ok bool
	if r.op == wire.OpAppend || r.op == wire.OpCAS || r.op == wire.OpCAD {
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
		if n := len(cur) + len(r.value); n > wire.MaxValue {
			// Refused, and remembered as the outcome (a retry gets the
			// same answer): a value past the limit would not fit the
			// replication and re-seeding frames.
			e.noop = true
			o.status = wire.StatusTooLarge
			o.value = fmt.Appendf(nil, "append would make a value of %d bytes, limit %d; not applied", n, wire.MaxValue)
			break
		}
		nv := make([]byte, len(cur)+len(r.value))
		copy(nv, cur)
		copy(nv[len(cur):], r.value)
		e.val = nv
	case wire.OpCAS, wire.OpCAD:
		match := false
		if r.flags&wire.FlagOldPresent == 0 {
			match = !ok
		} else {
			match = ok && bytes.Equal(cur, r.aux)
		}
		switch {
		case match && r.op == wire.OpCAD:
			e.del = true
		case match:
			e.val = r.value
		default:
			e.noop = true
			o.status = wire.StatusMismatch
			if ok {
				o.flags = wire.FlagOldPresent
				if r.flags&wire.FlagNoCurrent == 0 {
					o.value = cur
				}
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

// commitUpTo commits every in-flight entry with index <= idx (the
// secondary has it): with a write-ahead log once the log has it too
// (durable.go), else at once.
func (p *primary) commitUpTo(idx uint64, loop gnet.EventLoop) {
	if p.env.dur != nil {
		replies := newReplyBatch()
		defer replies.release()
		p.mu.Lock()
		p.logCommitLocked(idx, replies)
		p.mu.Unlock()
		replies.flush(loop)
		return
	}
	p.applyUpTo(idx, loop)
}

// applyUpTo applies every in-flight entry with index <= idx to the table,
// in order, and answers the clients waiting for them.
func (p *primary) applyUpTo(idx uint64, loop gnet.EventLoop) {
	replies := newReplyBatch()
	defer replies.release()
	p.mu.Lock()
	p.applyUpToLocked(idx, replies)
	p.mu.Unlock()
	replies.flush(loop)
}

// applyUpToLocked is applyUpTo with p.mu held, the answers added to
// replies.
func (p *primary) applyUpToLocked(idx uint64, replies *replyBatch) {
	n := 0
	for n < len(p.inflight) && p.inflight[n].index <= idx {
		n++
	}
	batch := p.inflight[:n]
	for i, e := range batch {
		if i%warmBatch == 0 {
			p.warm(batch[i:min(i+warmBatch, len(batch))])
		}
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
}

// warm warms the table for the writes of batch, at most warmBatch of
// them (table.warm).
func (p *primary) warm(batch []*entry) {
	if len(batch) < 2 {
		return
	}
	var hs [warmBatch]uint64
	n := 0
	for _, e := range batch[:min(len(batch), warmBatch)] {
		if !e.noop {
			hs[n] = hashKey(strBytes(e.key))
			n++
		}
	}
	p.t.warm(hs[:n])
}

// answer builds the reply frame of a finished write for request id.
func answer(op wire.Op, id uint64, o *outcome) *wire.Frame {
	if op == 0 {
		op = wire.OpPut // the op is not needed by clients; answers match by id
	}
	return &wire.Frame{Op: op, ID: id, Status: o.status, Flags: o.flags, Value: o.value}
}

// appendRepl appends e's REPL frame at epoch.
func appendRepl(buf []byte, e *entry, epoch uint64) []byte {
	o := e.out
	f := wire.Frame{Op: wire.OpRepl, ID: e.index, Epoch: epoch, Status: o.status, Flags: o.flags,
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
