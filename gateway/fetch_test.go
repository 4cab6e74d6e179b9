package gateway

import (
	"bufio"
	"fmt"
	"ftkv/internal/connlimit"
	"ftkv/limits"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNeverReadingClientsShareTheFetches: 200 clients pipeline GETs of a
// 1 MiB value, 64 every 100 ms, and never read (each reconnects once the
// gateway closes it), while an honest client GETs a small value every
// 20 ms. The cluster's answers share one link (memStore.perMiB: 5 ms per
// MiB, in turn). The values the gateway fetches at once stay within
// fetchBudget and a value, and the honest GET never waits for more than
// a hundred of the hogs' values. (An attack with 1,000 such clients
// through a real cluster: the gateway fetched one value per connection
// at once, 1.3 GB of RSS, and honest GETs waited 6-8 s.)
func TestNeverReadingClientsShareTheFetches(t *testing.T) {
	st := newMemStore()
	st.m["big"] = make([]byte, maxValue)
	st.m["small"] = []byte("v")
	st.perMiB = 5 * time.Millisecond
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	const hogs = 200
	req := []byte(strings.Repeat(cmd("GET", "big"), 64))
	end := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for range hogs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				nc, err := net.Dial("tcp", g.Addr())
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				for time.Now().Before(end) {
					_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					if _, err := nc.Write(req); err != nil && !isTimeout(err) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				nc.Close()
			}
		}()
	}
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	var worst time.Duration
	n := 0
	for time.Now().Before(end) {
		t0 := time.Now()
		_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := nc.Write([]byte(cmd("GET", "small"))); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"$1\r\n", "v\r\n"} {
			line, err := r.ReadString('\n')
			if err != nil || line != want {
				t.Fatalf("honest GET: %q %v, want %q", line, err, want)
			}
		}
		worst = max(worst, time.Since(t0))
		n++
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	peak := st.fetchPeak.Load()
	t.Logf("values fetched at once: at most %d MiB; %d honest GETs, the slowest %v", peak>>20, n, worst)
	if limit := int64(fetchBudget + maxValue); peak > limit {
		t.Errorf("the gateway fetched %d MiB of values at once, want at most fetchBudget and a value (%d MiB)", peak>>20, limit>>20)
	}
}

// TestQueuedCommandsHeldAsCounted: 300 clients each pipeline 3,000 GETs
// (66 KB) while the cluster answers nothing. The gateway holds what it
// counts of them (inflight_budget, and connlimit.BudgetFloor per
// connection beyond it), not buffers sized for all the input left: its
// live heap grows by at most twice that. (Before: the arguments and the
// commands of each read were allocated for the whole input left, however
// few commands the budget let in, and 1,000 such clients made the
// gateway hold 400 MB.)
func TestQueuedCommandsHeldAsCounted(t *testing.T) {
	st := newMemStore()
	st.gate = make(chan struct{})
	defer close(st.gate)
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	const conns = 300
	req := strings.Repeat(cmd("GET", "k"), 3000)
	base := liveHeap()
	for range conns {
		sendNew(t, g.Addr(), req, time.Minute)
	}
	var peak uint64
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		peak = max(peak, liveHeap())
		time.Sleep(100 * time.Millisecond)
	}
	grew := int64(peak) - int64(base)
	counted := int64(limits.DefaultInflightBudget + conns*(connlimit.BudgetFloor+1024))
	sent := int64(conns * len(req))
	t.Logf("live heap grew by %d MiB; commands counted: %d MiB at most (%d MiB now); input sent %d MiB", grew>>20, counted>>20, g.Queued()>>20, sent>>20)
	if limit := 3*counted/2 + sent; grew > limit {
		t.Errorf("live heap grew by %d MiB with %d clients' commands queued, want at most 1.5 times what is counted (%d MiB) and the input sent (%d MiB)", grew>>20, conns, counted>>20, sent>>20)
	}
}

// TestSetNXFetchesNoCurrentValue: SETNX, SET NX and an HTTP PUT with
// If-None-Match: * of a key that holds 1 MiB only need to know that the
// key exists. They asked for a compare-and-swap that answers the current
// value on a mismatch, and fetched it outside the fetch budget (a new
// connection's estimate is 64 bytes): 100 new connections, each sending
// one SETNX and one SET NX, made the gateway fetch about 100 MiB at once
// (a review). Now their compare-and-swap asks for no current value.
func TestSetNXFetchesNoCurrentValue(t *testing.T) {
	st := newMemStore()
	st.m["big"] = make([]byte, maxValue)
	st.perMiB = 30 * time.Millisecond // (the SETNXs arrive faster than the link drains)
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute; c.HTTP = "127.0.0.1:0" })
	const conns = 100
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%10 == 0 {
				req, _ := http.NewRequest(http.MethodPut, "http://"+g.HTTPAddr()+"/v1/kv/big", strings.NewReader("z"))
				req.Header.Set("If-None-Match", "*")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusPreconditionFailed {
					t.Errorf("PUT If-None-Match: * of an existing key: %s, want 412", resp.Status)
				}
				return
			}
			want := ":0\r\n$-1\r\n"
			got, err := ask(g.Addr(), cmd("SETNX", "big", "x")+cmd("SET", "big", "y", "NX"), len(want), 30*time.Second)
			if err != nil || string(got) != want {
				t.Errorf("SETNX and SET NX of an existing key: %q %v, want %q", got, err, want)
			}
		}()
	}
	wg.Wait()
	peak := st.fetchPeak.Load()
	t.Logf("values fetched at once: at most %d MiB", peak>>20)
	if peak > 0 {
		t.Errorf("SETNX, SET NX and If-None-Match made the gateway fetch %d MiB of current values at once, want none", peak>>20)
	}
	if v := st.m["big"]; len(v) != maxValue {
		t.Errorf("the key was overwritten: %d bytes", len(v))
	}
}

// TestSetNXGetFetchesWithinTheBudget: SET k v NX GET of a key that holds
// 1 MiB answers its value, fetched within the fetch budget as a GET's.
// The compare-and-swap brought it back outside the budget (a new
// connection's estimate is 64 bytes): 100 new connections at once made
// the gateway fetch about 100 MiB (a review; through a real cluster each
// such mismatch also left a record of 1 MiB on the server, and 16 of
// them refused every write of the gateway's client to that server).
func TestSetNXGetFetchesWithinTheBudget(t *testing.T) {
	st := newMemStore()
	big := make([]byte, maxValue)
	big[0], big[maxValue-1] = 'b', 'e'
	st.m["big"] = big
	st.perMiB = 30 * time.Millisecond // (the commands arrive faster than the link drains)
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	const conns = 60
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := "$1048576\r\n" + string(big) + "\r\n"
			got, err := ask(g.Addr(), cmd("SET", "big", "y", "NX", "GET"), len(want), 50*time.Second)
			if err != nil || string(got) != want {
				t.Errorf("SET NX GET of an existing key: %d bytes %v, want its value", len(got), err)
			}
		}()
	}
	wg.Wait()
	peak := st.fetchPeak.Load()
	t.Logf("values fetched at once: at most %d MiB", peak>>20)
	if limit := int64(fetchBudget + maxValue); peak > limit {
		t.Errorf("SET NX GET made the gateway fetch %d MiB of values at once, want at most fetchBudget and a value (%d MiB)", peak>>20, limit>>20)
	}
}

// TestContendedSwapsReadAgain: INCRs of one counter from several
// connections at once meet mismatches, each answered without the current
// value and followed by a read (session.cas): every INCR is applied once
// and the answers are 1..n, each once.
func TestContendedSwapsReadAgain(t *testing.T) {
	g := start(t, newMemStore(), func(c *Config) { c.Timeout = time.Minute })
	const conns, each = 8, 150
	seen := make([]atomic.Int32, conns*each+1)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", g.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(50 * time.Second))
			br := bufio.NewReader(nc)
			for range each {
				if _, err := nc.Write([]byte(cmd("INCR", "ctr"))); err != nil {
					t.Error(err)
					return
				}
				line, err := br.ReadString('\n')
				n, perr := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(line, ":"), "\r\n"))
				if err != nil || perr != nil || n < 1 || n > conns*each {
					t.Errorf("INCR answered %q %v", line, err)
					return
				}
				seen[n].Add(1)
			}
		}()
	}
	wg.Wait()
	for n := 1; n <= conns*each; n++ {
		if c := seen[n].Load(); c != 1 {
			t.Fatalf("INCR answer %d seen %d times, want once", n, c)
		}
	}
}

// ask sends in on a new connection and reads n bytes of answers, within
// d (safe in any goroutine: errors are returned).
func ask(addr, in string, n int, d time.Duration) ([]byte, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(nc, in); err != nil {
		return nil, err
	}
	got := make([]byte, n)
	k, err := io.ReadFull(nc, got)
	return got[:k], err
}

// TestContendedIfMatchReadsAgain: HTTP PUTs of 64 KiB with If-Match naming
// the current ETag of a key that holds 1 MiB, all at once: one writes
// (204), the others fail their precondition (412), as they must. A PUT
// whose compare-and-swap lost the race took the current value from its
// answer: the winner's value back to the gateway each (up to 1 MiB), and
// a record of that size left on the server, where every gateway
// connection shares one client's bound. Now it asks for no current value
// and reads the key again.
func TestContendedIfMatchReadsAgain(t *testing.T) {
	st := newMemStore()
	st.m["big"] = make([]byte, maxValue)
	const puts, size = 20, 64 << 10
	st.readers, st.allRead = puts, make(chan struct{}) // (every PUT reads the key before any swaps)
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute; c.HTTP = "127.0.0.1:0" })
	tag := etag(st.m["big"])
	var wrote, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range puts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := strings.Repeat("v", size-8) + fmt.Sprintf("%08d", i)
			req, _ := http.NewRequest(http.MethodPut, "http://"+g.HTTPAddr()+"/v1/kv/big", strings.NewReader(body))
			req.Header.Set("If-Match", tag)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusNoContent:
				wrote.Add(1)
			case http.StatusPreconditionFailed:
				failed.Add(1)
			default:
				t.Errorf("PUT If-Match: %s", resp.Status)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d written, %d failed their precondition; compare-and-swaps brought back %d KiB of current values", wrote.Load(), failed.Load(), st.casCurrent.Load()>>10)
	if wrote.Load() != 1 || failed.Load() != puts-1 {
		t.Errorf("%d PUTs written and %d failed, want 1 and %d", wrote.Load(), failed.Load(), puts-1)
	}
	if n := st.casCurrent.Load(); n > 0 {
		t.Errorf("the compare-and-swaps that lost brought back %d KiB of current values, want none", n>>10)
	}
	v := st.m["big"]
	if n, err := strconv.Atoi(string(v[max(len(v)-8, 0):])); len(v) != size || err != nil || n < 0 || n >= puts {
		t.Errorf("the key holds %d bytes ending %q, want one PUT's body", len(v), v[max(len(v)-8, 0):])
	}
}
