package e2e

// Review of wal.TryWrite (a primary with fsync everysec/no writes its
// committed records on its own goroutine and answers at once; a secondary
// writes its lazily logged frames itself): every acknowledged overwrite
// must survive kill -9 of every process, with snapshots taken under load
// (small snapshot_bytes) and a partial resync in between.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// overLedger overwrites a fixed set of keys, one writer per key, and
// remembers per key the last acknowledged index and the indexes whose
// outcome is unknown.
type overLedger struct {
	mu      sync.Mutex
	acked   map[string]int
	unknown map[string]map[int]bool
	nacked  int
	stop    chan struct{}
	wg      sync.WaitGroup
}

const review9Pad = 600

func review9Value(k string, i int) string {
	return fmt.Sprintf("%s#%d#%s", k, i, strings.Repeat("p", review9Pad))
}

func (l *overLedger) start(cls []*client.Client, writers, keysPer int, prefix string) {
	l.stop = make(chan struct{})
	for g := 0; g < writers; g++ {
		l.wg.Add(1)
		go func(g int) {
			defer l.wg.Done()
			cl := cls[g%len(cls)]
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				k := fmt.Sprintf("%s/%d/%d", prefix, g, i%keysPer)
				l.mu.Lock()
				idx := l.acked[k] + 1 + len(l.unknown[k])
				l.mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), restartOpTimeout)
				err := cl.Put(ctx, k, []byte(review9Value(k, idx)))
				cancel()
				l.mu.Lock()
				if err != nil {
					if l.unknown[k] == nil {
						l.unknown[k] = map[int]bool{}
					}
					l.unknown[k][idx] = true
				} else {
					l.acked[k] = idx
					l.nacked++
				}
				l.mu.Unlock()
			}
		}(g)
	}
}

func (l *overLedger) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *overLedger) count() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(l.nacked)
}

// check reads every key back: its value must be the last acknowledged
// one, or a later one whose Put failed (outcome unknown).
func (l *overLedger) check(t *testing.T, cl *client.Client, round string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	bad := 0
	for k, a := range l.acked {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		v, err := cl.Get(ctx, k)
		cancel()
		got := -1
		if err == nil {
			parts := strings.SplitN(string(v), "#", 3)
			if len(parts) == 3 && parts[0] == k {
				got, _ = strconv.Atoi(parts[1])
			}
		} else if !errors.Is(err, client.ErrNotFound) {
			t.Errorf("%s: Get %q: %v", round, k, err)
			bad++
			continue
		}
		if got == a || (got > a && l.unknown[k][got]) {
			continue
		}
		bad++
		if bad <= 10 {
			t.Errorf("%s: key %q holds index %d; last acknowledged %d (unknown outcomes %v)", round, k, got, a, l.unknown[k])
		}
	}
	t.Logf("%s: checked %d keys (%d puts acknowledged so far), %d wrong", round, len(l.acked), l.nacked, bad)
}

func TestReview9KillEverythingTryWrite(t *testing.T) {
	for _, pol := range []string{"everysec", "no"} {
		t.Run(pol, func(t *testing.T) {
			const n = 3
			cfg := fmt.Sprintf("%d\n", n) + strings.Repeat("localhost 0 0 0\n", n) +
				"fsync " + pol + "\nsnapshot_bytes 65536\n"
			c := testcluster.Start(t, testcluster.Options{Config: cfg, Plain: true})
			cls := dialClients(c, 3)
			c.WaitRecovered(t, 10*time.Second)
			l := &overLedger{acked: map[string]int{}, unknown: map[string]map[int]bool{}}
			for round := 1; round <= 4; round++ {
				l.start(cls, 12, 40, "r9-"+pol)
				waitProgress(t, c, "load", l.count, 1500, time.Second)
				if round == 3 {
					// A respawn (partial resync) under load, then
					// everything killed just after it finished.
					v := c.KillServer(t, 1)
					c.WaitRecovered(t, recoverTimeout, v)
					waitProgress(t, c, "load after the respawn", l.count, 300, time.Second)
				}
				c.KillEverything(t)
				c.RestartCoord(t)
				allServing(t, c, 30*time.Second)
				l.halt()
				l.check(t, cls[0], fmt.Sprintf("%s round %d", pol, round))
				if t.Failed() {
					return
				}
			}
			st := c.Status(t)
			for _, s := range st.Servers {
				t.Logf("server %d: log %d bytes, snapshot %d bytes", s.ID, s.LogBytes, s.SnapshotBytes)
			}
		})
	}
}
