package server

import (
	"slices"
	"sync"
	"sync/atomic"

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
		for _, r := range cr.recs {
			if o := r.o; o.done.Load() {
				b = wire.AppendDedupRecord(b, client, r.seq, o.status, o.flags, o.value)
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
		if cr := d.clients[client]; cr == nil || cr.get(seq) == nil {
			d.client(client).put(seq, doneOutcome(st, flags, append([]byte(nil), value...)))
		}
		b = rest
	}
	return nil
}

// outcome is the remembered answer to one client write. The connections
// waiting for it are the write path's business (entry.retries), not the
// record's: the record outlives them.
type outcome struct {
	// done is set once the write committed (or, on a secondary, when the
	// record is made); status, flags and value are final from then on.
	// It is atomic so a retry on another event loop reads it without the
	// dedup lock.
	done   atomic.Bool
	status wire.Status
	flags  uint8
	value  []byte // current value for a MISMATCH answer
}

// doneOutcome is a finished record, as a secondary learns it.
func doneOutcome(st wire.Status, flags uint8, value []byte) *outcome {
	o := &outcome{status: st, flags: flags, value: value}
	o.done.Store(true)
	return o
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

// clientRecs are one client's remembered outcomes, sorted by sequence
// number. A client numbers its writes in order and raises its floor as
// answers arrive, so records are appended at the end and pruned from the
// front, and there are about as many as the client has writes in flight.
type clientRecs struct {
	floor uint64
	recs  []seqOutcome
}

type seqOutcome struct {
	seq uint64
	o   *outcome
}

// search is the position of seq in recs, or where it would go.
func (cr *clientRecs) search(seq uint64) (int, bool) {
	lo, hi := 0, len(cr.recs)
	if hi > 0 && cr.recs[hi-1].seq < seq {
		return hi, false // the usual case: a new write
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cr.recs[m].seq < seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(cr.recs) && cr.recs[lo].seq == seq
}

func (cr *clientRecs) get(seq uint64) *outcome {
	if i, ok := cr.search(seq); ok {
		return cr.recs[i].o
	}
	return nil
}

// raise moves the floor up to floor, dropping the records below it.
func (cr *clientRecs) raise(floor uint64) {
	if floor <= cr.floor {
		return
	}
	cr.floor = floor
	i, _ := cr.search(floor)
	cr.recs = slices.Delete(cr.recs, 0, i)
}

func newDedup() *dedup { return &dedup{clients: make(map[uint64]*clientRecs)} }

func (d *dedup) client(client uint64) *clientRecs {
	cr := d.clients[client]
	if cr == nil {
		cr = &clientRecs{}
		d.clients[client] = cr
	}
	return cr
}

// claim is what a primary's sequencer learns about a client write.
type claim uint8

const (
	claimNew      claim = iota // not seen before: the returned record is registered for it
	claimDone                  // answered before: answer again from the record
	claimInFlight              // sequenced, not committed yet: wait for it
	claimStale                 // below the client's floor: it can no longer be a retry
)

// claim prunes client's records below floor and looks up (client, seq);
// an unknown write gets a new, unfinished record, registered at once so
// a retry arriving on another event loop finds it.
func (d *dedup) claim(client, seq, floor uint64) (*outcome, claim) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cr := d.client(client)
	cr.raise(floor)
	if seq < cr.floor {
		return nil, claimStale
	}
	if o := cr.get(seq); o != nil {
		if o.done.Load() {
			return o, claimDone
		}
		return o, claimInFlight
	}
	o := &outcome{}
	cr.put(seq, o)
	return o, claimNew
}

// record prunes client's records below floor and stores o for seq, for a
// secondary that learns a write's outcome from its primary.
func (d *dedup) record(client, seq, floor uint64, o *outcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cr := d.client(client)
	cr.raise(floor)
	cr.put(seq, o)
}

func (cr *clientRecs) put(seq uint64, o *outcome) {
	if seq < cr.floor {
		return
	}
	i, ok := cr.search(seq)
	if ok {
		cr.recs[i].o = o
		return
	}
	cr.recs = slices.Insert(cr.recs, i, seqOutcome{seq, o})
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

// forget drops the record of (client, seq): a write its primary gave up
// on (the client retries it elsewhere).
func (d *dedup) forget(client, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cr := d.clients[client]
	if cr == nil {
		return
	}
	if i, ok := cr.search(seq); ok {
		cr.recs = slices.Delete(cr.recs, i, i+1)
	}
}
