package server

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/wire"
)

// TestWALThroughput (FTKV_WAL_BENCH=1) measures replicated puts per second
// through two servers on loopback, 50 connections without pipelining, with
// no data dir and each fsync policy, in one run: compare the ratios.
func TestWALThroughput(t *testing.T) {
	if os.Getenv("FTKV_WAL_BENCH") == "" {
		t.Skip("set FTKV_WAL_BENCH=1")
	}
	type cfg struct {
		name, fsync string
		syncSec     bool
	}
	var base float64
	for _, c := range []cfg{{"no data dir", "", false}, {"always", "always", false}, {"always+secondary fsync", "always", true},
		{"everysec", "everysec", false}, {"no", "no", false}} {
		fc := startFakeCoord(t)
		var dirs [2]string
		if c.fsync != "" {
			dirs = [2]string{t.TempDir(), t.TempDir()}
		}
		a, stopA := startDurableServer(t, fc, 0, dirs[0], c.fsync, c.syncSec)
		b, stopB := startDurableServer(t, fc, 1, dirs[1], c.fsync, c.syncSec)
		v := wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
			Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}
		pushView(t, v, a, b)
		var n atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(3 * time.Second)
		val := make([]byte, 100)
		putLoad(t, []*testServer{a, b}, 50, stop, val, &n, &wg)
		wg.Wait()
		rate := float64(n.Load()) / 3
		if base == 0 {
			base = rate
		}
		t.Logf("%-24s %8.0f puts/s  %.2fx", c.name, rate, rate/base)
		stopA()
		stopB()
	}
}

// putLoad starts workers goroutines on wg, each putting 100-byte values
// to keys of the shard its server (servers, in turn) leads, one request
// at a time, until stop; n counts the puts answered OK.
func putLoad(t *testing.T, servers []*testServer, workers int, stop time.Time, val []byte, n *atomic.Int64, wg *sync.WaitGroup) {
	for w := 0; w < workers; w++ {
		srv := servers[w%len(servers)]
		keys := keysOf(fmt.Sprintf("b%d", w), w%len(servers), len(servers), 100)
		cn := dialConn(t, srv.client, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				ans, err := cn.do(&wire.Frame{Op: wire.OpPut, Key: []byte(keys[i%len(keys)]), Value: val}, 10*time.Second)
				if err != nil || ans.Status != wire.StatusOK {
					t.Errorf("put: %v %v", err, ans.Status)
					return
				}
				n.Add(1)
			}
		}()
	}
}
