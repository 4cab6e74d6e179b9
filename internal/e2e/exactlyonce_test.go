package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/proxy"
	"ftkv/internal/testkit/testcluster"
)

// TestAppendExactlyOnce puts a proxy between the client and every server
// that often cuts a connection right after the server answered, dropping
// the answer: the write is applied but the client only sees a broken
// connection and must retry it. Eight goroutines append unique tokens;
// every token must then be found exactly once, each goroutine's tokens in
// the order it appended them.
func TestAppendExactlyOnce(t *testing.T) {
	const (
		workers   = 8
		perWorker = 200
		keys      = 5
		dropProb  = 0.25 // per chunk of answers read from a server
		minDrops  = 20
	)
	c := testcluster.Start(t, testcluster.Options{N: 3})
	base := seed(t)

	var dmu sync.Mutex
	drng := rand.New(rand.NewSource(base ^ 0x5eed))
	drop := func() bool {
		dmu.Lock()
		defer dmu.Unlock()
		return drng.Float64() < dropProb
	}
	var pmu sync.Mutex // proxies, one per server address
	proxies := map[string]*proxy.Proxy{}
	t.Cleanup(func() {
		pmu.Lock()
		ps := proxies
		proxies = nil
		pmu.Unlock()
		for _, p := range ps {
			_ = p.Close()
		}
	})
	direct := &net.Dialer{}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == c.Addr {
			return direct.DialContext(ctx, network, addr) // the coordinator: no faults
		}
		pmu.Lock()
		if proxies == nil {
			pmu.Unlock()
			return nil, net.ErrClosed
		}
		p := proxies[addr]
		if p == nil {
			var err error
			if p, err = proxy.Start(addr, proxy.Options{DropReply: drop}); err != nil {
				pmu.Unlock()
				return nil, err
			}
			proxies[addr] = p
		}
		pmu.Unlock()
		return direct.DialContext(ctx, network, p.Addr())
	}
	faulty := c.Client(client.WithDialer(dial))

	keyNames := make([]string, keys)
	for i := range keyNames {
		keyNames[i] = fmt.Sprintf("eo-%d", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(base + int64(g)))
			for i := 0; i < perWorker; i++ {
				key := keyNames[rng.Intn(keys)]
				octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
				err := faulty.Append(octx, key, []byte(fmt.Sprintf("%d:%d;", g, i)))
				ocancel()
				if err != nil {
					errs <- fmt.Errorf("worker %d append %d to %s: %w", g, i, key, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var drops, conns int64
	pmu.Lock()
	for _, p := range proxies {
		drops += p.Drops()
		conns += p.Accepted()
	}
	pmu.Unlock()
	t.Logf("%d appends in %s through %d proxied connections, %d answers dropped",
		workers*perWorker, elapsed.Round(time.Millisecond), conns, drops)
	if t.Failed() {
		t.FailNow()
	}
	if drops < minDrops {
		t.Fatalf("only %d answers dropped; want at least %d for the test to mean anything", drops, minDrops)
	}

	// Read back without the proxy.
	cl := c.Client()
	seen := map[string]string{}  // token -> key it was found in
	last := make([]int, workers) // per worker, per key: last index seen
	total := 0
	for _, key := range keyNames {
		v, err := cl.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		for w := range last {
			last[w] = -1
		}
		toks := strings.Split(string(v), ";")
		if toks[len(toks)-1] != "" {
			t.Fatalf("%s does not end with a complete token: ...%q", key, tailOf(string(v), 40))
		}
		for _, tok := range toks[:len(toks)-1] {
			g, i, ok := parseToken(tok)
			if !ok || g >= workers || i >= perWorker {
				t.Fatalf("%s holds a token %q that was never appended", key, tok)
			}
			if prev, dup := seen[tok]; dup {
				t.Fatalf("token %q appended more than once (in %s and %s)", tok, prev, key)
			}
			seen[tok] = key
			if i <= last[g] {
				t.Fatalf("%s: worker %d's token %d comes after its token %d", key, g, i, last[g])
			}
			last[g] = i
			total++
		}
	}
	if total != workers*perWorker {
		var missing []string
		for g := 0; g < workers && len(missing) < 10; g++ {
			for i := 0; i < perWorker && len(missing) < 10; i++ {
				if _, ok := seen[fmt.Sprintf("%d:%d", g, i)]; !ok {
					missing = append(missing, fmt.Sprintf("%d:%d", g, i))
				}
			}
		}
		t.Fatalf("found %d tokens, appended %d (missing e.g. %v)", total, workers*perWorker, missing)
	}
}

// parseToken splits "g:i" into its numbers.
func parseToken(tok string) (g, i int, ok bool) {
	a, b, found := strings.Cut(tok, ":")
	if !found {
		return 0, 0, false
	}
	g, err1 := strconv.Atoi(a)
	i, err2 := strconv.Atoi(b)
	return g, i, err1 == nil && err2 == nil && g >= 0 && i >= 0
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
