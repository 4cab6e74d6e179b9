package server

import (
	"sync"

	"github.com/panjf2000/gnet/v2"

	"ftkv/wire"
)

// snapshot encodes every finished outcome, for a re-seeding secondary
// (writes still in flight reach it with their REPL frames).
// Records are packed in chunks of about 1 MiB, each one SEED frame.
func (d *dedup) snapshot() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	var chunks [][]byte
	var b []byte
	for client, cr := range d.clients {
		for seq, o := range cr.recs {
			if o.done {
				b = wire.AppendDedupRecord(b, client, seq, o.status, o.flags, o.value)
				if len(b) >= 1<<20 {
					chunks = append(chunks, b)
					b = nil
				}
			}
		}
	}
	return append(chunks, b)
}

// restore records the outcomes of a snapshot.
func (d *dedup) restore(b []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(b) > 0 {
		client, seq, st, flags, value, rest, err := wire.NextDedupRecord(b)
		if err != nil {
			return err
		}
		if cr := d.clients[client]; cr == nil || cr.recs[seq] == nil {
			d.put(client, seq, &outcome{done: true, status: st, flags: flags, value: append([]byte(nil), value...)})
		}
		b = rest
	}
	return nil
}

// outcome is the remembered answer to one client write.
type outcome struct {
	done    bool
	status  wire.Status
	flags   uint8
	value   []byte // current value for a MISMATCH answer
	waiters []waiter
	one     [1]waiter // waiters' first element, without an allocation of its own
}

// newOutcome is an unfinished outcome with one waiter.
func newOutcome(c gnet.Conn, id uint64) *outcome {
	o := &outcome{}
	o.one[0] = waiter{c, id}
	o.waiters = o.one[:1:1]
	return o
}

// answered forgets the waiters once they have their answer (the record
// outlives the connections).
func (o *outcome) answered() {
	o.waiters = nil
	o.one = [1]waiter{}
}

// waiter is a connection waiting for a write's answer: the original
// request, plus any retry that arrived while the write was in flight.
type waiter struct {
	c  gnet.Conn
	id uint64
}

// dedup remembers the outcome of every client write whose sequence number
// is at or above the client's floor (the client has not yet seen the answer
// of anything at or above it), so a retried write is applied at most once.
// Primaries record writes when they are sequenced, secondaries when they
// are replicated, so the record survives a promotion.
type dedup struct {
	mu      sync.Mutex
	clients map[uint64]*clientRecs
}

type clientRecs struct {
	floor uint64
	recs  map[uint64]*outcome
}

func newDedup() *dedup { return &dedup{clients: make(map[uint64]*clientRecs)} }

// lookup returns the record of (client, seq) after pruning everything below
// floor. A seq below the client's floor is an answered write that can no
// longer be retried; it reports stale so the caller can refuse it.
func (d *dedup) lookup(client, seq, floor uint64) (o *outcome, stale bool) {
	cr := d.clients[client]
	if cr == nil {
		cr = &clientRecs{recs: make(map[uint64]*outcome)}
		d.clients[client] = cr
	}
	if floor > cr.floor {
		for s := range cr.recs {
			if s < floor {
				delete(cr.recs, s)
			}
		}
		cr.floor = floor
	}
	if seq < cr.floor {
		return nil, true
	}
	return cr.recs[seq], false
}

func (d *dedup) put(client, seq uint64, o *outcome) {
	cr := d.clients[client]
	if cr == nil {
		cr = &clientRecs{recs: make(map[uint64]*outcome)}
		d.clients[client] = cr
	}
	if seq >= cr.floor {
		cr.recs[seq] = o
	}
}

// size is the number of remembered outcomes (for tests and status).
func (d *dedup) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, cr := range d.clients {
		n += len(cr.recs)
	}
	return n
}

// forget drops the record of (client, seq); called with mu held.
func (d *dedup) forget(client, seq uint64) {
	if cr := d.clients[client]; cr != nil {
		delete(cr.recs, seq)
	}
}
