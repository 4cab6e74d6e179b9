package coord

import (
	"context"
	"sync"

	"ftkv/status"
	"ftkv/wire"
)

// keyCounts is one incarnation's key counts as it answered them, under
// the view of epoch (the one it had applied).
type keyCounts struct{ inc, epoch, primary, secondary uint64 }

// countsRefresh puts together the status requests' questions to the
// servers: one round of them at a time, each request answered by a
// round that started after it came.
type countsRefresh struct {
	mu      sync.Mutex
	started uint64        // rounds started
	running chan struct{} // closed when the round in flight ends (nil: none)
	last    map[int]keyCounts
}

// freshStatus is the status (Status) with the key counts every live
// member gives when asked now, instead of those of its last heartbeat
// (a fifth of the failure timeout old at most: a contract check wrote
// 200 keys and read 120 in status; writes acknowledged before a status
// request are counted in its answer). A member that does not answer
// within a heartbeat period keeps its heartbeat's counts.
func (c *Coordinator) freshStatus() *status.Cluster {
	counts := c.freshCounts()
	st := c.Status()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range st.Servers {
		ss := &st.Servers[i]
		kc, ok := counts[ss.ID]
		if !ok || ss.ID < 0 || ss.ID >= len(c.nodes) {
			continue
		}
		if nd := c.nodes[ss.ID]; kc.inc == ss.Incarnation && kc.inc == nd.hb.Incarnation && kc.epoch >= max(nd.hb.Epoch, nd.counted) {
			ss.PrimaryKeys, ss.SecondaryKeys = kc.primary, kc.secondary
		}
	}
	return st
}

// freshCounts returns the key counts of a round of questions that
// started after the call.
func (c *Coordinator) freshCounts() map[int]keyCounts {
	cr := &c.counts
	cr.mu.Lock()
	came := cr.started
	for cr.running != nil {
		ch, seq := cr.running, cr.started
		cr.mu.Unlock()
		<-ch
		cr.mu.Lock()
		if seq > came {
			got := cr.last
			cr.mu.Unlock()
			return got
		}
	}
	cr.started++
	ch := make(chan struct{})
	cr.running = ch
	cr.mu.Unlock()
	got := c.askCounts()
	cr.mu.Lock()
	cr.last, cr.running = got, nil
	cr.mu.Unlock()
	close(ch)
	return got
}

// askCounts asks every live member of the view for its key counts on
// its control port, for a heartbeat period at most.
func (c *Coordinator) askCounts() map[int]keyCounts {
	type ask struct {
		nd  *node
		id  int
		inc uint64
	}
	var asks []ask
	c.mu.Lock()
	for i, nd := range c.nodes {
		if i < len(c.view.Servers) && live(c.view.Servers[i]) && nd.inc == c.view.Servers[i].Incarnation && nd.hb.CtlAddr != "" {
			asks = append(asks, ask{nd, i, nd.inc})
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timing.Heartbeat)
	defer cancel()
	out := make(map[int]keyCounts, len(asks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, a := range asks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans, err := c.control(ctx, a.nd, &wire.Frame{Op: wire.OpStatus})
			if replyErr(ans, err) != nil {
				return
			}
			if pk, sk, ok := wire.DecodeKeyCounts(ans.Value); ok {
				mu.Lock()
				out[a.id] = keyCounts{inc: a.inc, epoch: ans.Epoch, primary: pk, secondary: sk}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}
