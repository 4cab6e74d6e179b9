package gateway

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/client"
)

// batchBytes is a memStore counting the bytes of the values its Batch
// calls under way hold at once (most: their peak).
type batchBytes struct {
	*memStore
	now, most atomic.Int64
}

func (b *batchBytes) Batch(ctx context.Context, ops []client.BatchOp) error {
	err := b.memStore.Batch(ctx, ops)
	n := int64(0)
	for i := range ops {
		n += int64(len(ops[i].Value))
	}
	cur := b.now.Add(n)
	for m := b.most.Load(); cur > m && !b.most.CompareAndSwap(m, cur); m = b.most.Load() {
	}
	time.Sleep(20 * time.Millisecond) // (the values come back over the links)
	b.now.Add(-n)
	return err
}

// TestNewPipelinesFetchWithinTheBudget: 300 new connections each send 64
// GETs of distinct 16 KiB values (each GET at the batches' cap, capFloor)
// at once. A new connection's estimate is 64 bytes, so its run weighed 4
// KB for the fetch budget (getsWeight), not the 1 MiB its batch may fetch
// (64 GETs at getCap): the runs went into group batches holding nothing.
func TestNewPipelinesFetchWithinTheBudget(t *testing.T) {
	st := &batchBytes{memStore: newMemStore()}
	v := []byte(strings.Repeat("v", capFloor))
	var req strings.Builder
	for i := range 64 {
		k := fmt.Sprintf("k%d", i)
		st.m[k] = v
		req.WriteString(cmd("GET", k))
	}
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	const conns = 300
	var wg sync.WaitGroup
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ncs[i] = nc
	}
	for _, nc := range ncs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = nc.Write([]byte(req.String()))
		}()
	}
	wg.Wait()
	time.Sleep(2 * time.Second)
	most := st.most.Load()
	t.Logf("values fetched at once: at most %d MiB", most>>20)
	if limit := int64(fetchBudget + maxValue); most > limit {
		t.Errorf("the gateway fetched %d MiB of values at once, want at most fetchBudget and a value (%d MiB)", most>>20, limit>>20)
	}
}
