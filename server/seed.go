package server

import (
	"errors"
	"fmt"
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

func (h *peerHandler) applySeed(st *secState, f *wire.Frame) error {
	if f.Flags&wire.FlagDedup != 0 {
		return h.s.dd.restore(f.Value)
	}
	if f.ID == 1 {
		st.t.reserve(int(f.Floor))
	}
	// Each entry is copied into a record of its own (keys and values alias
	// the read buffer here).
	b := f.Value
	for len(b) > 0 {
		k, v, ver, rest, err := wire.NextSeedEntry(b)
		if err != nil {
			return err
		}
		st.t.merge(unsafe.String(unsafe.SliceData(k), len(k)), v, ver, false, true)
		b = rest
	}
	if f.Flags&wire.FlagSeedDone != 0 {
		st.seeding = false
		st.t.dropTombstones()
		h.s.log.Info().Int("shard", st.shard).Int("keys", st.t.len()).Msg("re-seeding complete")
	}
	return nil
}
