package server

import (
	"bytes"
	"fmt"
	"sync"
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
	key    string
	value  []byte
	aux    []byte
}

// entry is a sequenced write waiting for the secondary's acknowledgement.
type entry struct {
	index  uint64
	client uint64
	seq    uint64
	floor  uint64
	key    string
	val    []byte
	del    bool
	noop   bool
	out    *outcome
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
	secAddr   string
	epoch     uint64
	drained   *sync.Cond
}

func newPrimary(s *Server, shard int, t *table) *primary {
	p := &primary{
		s:       s,
		shard:   shard,
		t:       t,
		log:     s.log.With().Int("shard", shard).Logger(),
		stop:    make(chan struct{}),
		pending: make(map[string]pend),
	}
	p.drained = sync.NewCond(&p.mu)
	return p
}

// sequence assigns log indexes to a batch of writes and ships them to the
// secondary in one write.
// sequence runs on the event loop loop that read batch.
func (p *primary) sequence(batch []*wreq, buf []byte, loop gnet.EventLoop) []byte {
	replies := make(replyBatch)
	p.mu.Lock()
	first := p.nextIndex + 1
	for _, r := range batch {
		var o *outcome
		if r.client != 0 {
			p.s.dd.mu.Lock()
			old, stale := p.s.dd.lookup(r.client, r.seq, r.floor)
			if stale {
				p.s.dd.mu.Unlock()
				replies.add(r.c, &wire.Frame{Op: r.op, ID: r.id, Status: wire.StatusBadRequest,
					Value: []byte("sequence number below the client's own floor")})
				continue
			}
			if old != nil {
				if old.done {
					replies.add(r.c, answer(r.op, r.id, old))
				} else {
					old.waiters = append(old.waiters, waiter{r.c, r.id})
				}
				p.s.dd.mu.Unlock()
				continue
			}
			o = &outcome{waiters: []waiter{{r.c, r.id}}}
			p.s.dd.put(r.client, r.seq, o)
			p.s.dd.mu.Unlock()
		} else {
			o = &outcome{waiters: []waiter{{r.c, r.id}}}
		}
		e := p.apply(r, o)
		e.client, e.seq, e.floor = r.client, r.seq, r.floor
		p.nextIndex++
		e.index = p.nextIndex
		if !e.noop {
			p.pending[e.key] = pend{val: e.val, del: e.del, index: e.index}
		}
		p.inflight = append(p.inflight, e)
		buf = p.appendRepl(buf, e)
	}
	last := p.nextIndex
	link := p.link
	if link != nil && last >= first {
		link.queue(buf)
	}
	p.mu.Unlock()
	replies.flush(loop)
	if last < first {
		return buf
	}
	if link == nil {
		if !p.waitLink {
			// No secondary (a single-server cluster): commit at once.
			p.commitUpTo(last, loop)
		}
		return buf
	}
	link.flushSoon()
	return buf
}

// apply computes the effect of r on the newest value of its key.
func (p *primary) apply(r *wreq, o *outcome) *entry {
	cur, ok := p.latest(r.key)
	e := &entry{key: r.key, out: o}
	o.status = wire.StatusOK
	switch r.op {
	case wire.OpPut:
		e.val = r.value
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
	replies := make(replyBatch)
	p.mu.Lock()
	n := 0
	for n < len(p.inflight) && p.inflight[n].index <= idx {
		n++
	}
	batch := p.inflight[:n]
	for _, e := range batch {
		if !e.noop {
			if e.del {
				p.t.del(e.key)
			} else {
				p.t.set(e.key, e.val)
			}
			if pd, ok := p.pending[e.key]; ok && pd.index == e.index {
				delete(p.pending, e.key)
			}
		}
		p.committed = e.index
	}
	p.s.dd.mu.Lock()
	for _, e := range batch {
		e.out.done = true
		for _, w := range e.out.waiters {
			replies.add(w.c, answer(0, w.id, e.out))
		}
		e.out.waiters = nil
	}
	p.s.dd.mu.Unlock()
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
	p.mu.Unlock()
}

// connect (re)establishes the replication link to secAddr ("" = none) at
// epoch, retrying until timeout (the secondary may not have the view yet).
func (p *primary) connect(secAddr string, epoch uint64, timeout time.Duration) error {
	p.mu.Lock()
	if p.link != nil && p.secAddr == secAddr && !p.link.broken() {
		p.epoch = epoch
		p.mu.Unlock()
		return nil
	}
	old := p.link
	p.link = nil
	p.secAddr = secAddr
	p.epoch = epoch
	// While the link is down, writes stay in flight (unacknowledged) and
	// are sent when it is back; only a shard without a secondary commits
	// alone.
	p.waitLink = secAddr != ""
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
	if secAddr == "" {
		p.mu.Lock()
		last := p.nextIndex
		p.mu.Unlock()
		p.commitUpTo(last, nil)
		return nil
	}
	deadline := time.Now().Add(timeout)
	backoff := 10 * time.Millisecond
	for {
		l, acked, err := dialLink(p, secAddr, epoch)
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
			p.log.Info().Str("secondary", secAddr).Uint64("epoch", epoch).Msg("replication link up")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication link to %s: %w", secAddr, err)
		}
		time.Sleep(backoff)
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
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
	addr, epoch := p.secAddr, p.epoch
	p.mu.Unlock()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		if err := p.connect(addr, epoch, 2*time.Second); err == nil {
			return
		}
		p.log.Warn().Str("secondary", addr).Msg("secondary unreachable; writes wait")
	}
}
