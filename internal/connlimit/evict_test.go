package connlimit

import (
	"bufio"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/internal/frameio"
	"ftkv/wire"
)

// TestManyNonReadersEvicted: 40 clients pipeline GETs of 1 MiB and never
// read. Each alone stays under its own limits, and the budget pauses
// only those holding more than BudgetFloor: without eviction each holds
// its last answer, 40 of them far over the budget (without Evict: 15 MiB
// queued for a budget of 2 MiB, for good). With Evict the answers unread longest
// are closed until the queued output is back within one and a half
// times the budget (plus the answers under way), and a client that
// reads its answers is served all along.
func TestManyNonReadersEvicted(t *testing.T) {
	p, b := evictPort(t, 1<<20, 2<<20)
	for range 40 {
		nc := dial(t, p)
		_ = nc.SetReadBuffer(64 << 10)
		if _, err := nc.Write(gets(16, 0)); err != nil {
			t.Fatal(err)
		}
	}
	reader := dial(t, p)
	br := bufio.NewReaderSize(reader, 64<<10)
	var fbuf []byte
	peak := int64(0)
	deadline := time.Now().Add(2 * time.Second)
	for id := uint64(0); time.Now().Before(deadline); id++ {
		if _, err := reader.Write(gets(1, id)); err != nil {
			t.Fatalf("the reading client: %v", err)
		}
		_ = reader.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := frameio.ReadFrameInto(br, &fbuf)
		if err != nil || f.ID != id {
			t.Fatalf("the reading client's answer %d: %v (id %d)", id, err, f.ID)
		}
		peak = max(peak, b.Used())
	}
	settled := int64(3<<20) + 4<<20 // 1.5 x the budget, and answers under way
	eventually(t, 5*time.Second, "queued output back within the budget", func() bool { return b.Used() <= settled })
	t.Logf("queued output: peak %d, now %d (budget %d); %d connections closed for the budget", peak, b.Used(), 2<<20, p.OutputEvicted())
	if p.OutputEvicted() == 0 {
		t.Errorf("no connection closed for the output budget")
	}
}

// TestSlowReaderNotEvicted: a client reads its 1 MiB answers slowly, in
// bursts (640 KiB every 300 ms, 8 GETs in flight: within the output
// budget of 8 MiB); after a second,
// clients that never read start arriving (4 every 50 ms, each adding an
// answer over the budget) for 3 s. Those that never read are evicted,
// not the slow reader: a client seen reading again after a pause goes
// after those never seen reading, and only once it has shown no drain
// for staleDrained. (Before: staleness was the time since the last drain
// alone, so a newcomer holding its answer for 150 ms looked staler than
// the reader between two bursts, and the reader was closed, 3-19 times
// in 10-18 s in a review.)
func TestSlowReaderNotEvicted(t *testing.T) {
	p, _ := evictPort(t, 1<<20, 8<<20)
	reader := dial(t, p)
	_ = reader.SetReadBuffer(64 << 10)
	if _, err := reader.Write(gets(8, 0)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the non-readers
		defer close(done)
		select {
		case <-stop:
			return
		case <-time.After(time.Second):
		}
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			for range 4 {
				nc, err := net.DialTimeout("tcp", p.Addr().String(), time.Second)
				if err != nil {
					continue
				}
				_ = nc.(*net.TCPConn).SetReadBuffer(64 << 10)
				_, _ = nc.Write(gets(4, 0))
				t.Cleanup(func() { nc.Close() })
			}
		}
	}()
	defer func() { close(stop); <-done }()
	buf := make([]byte, 64<<10)
	var read int64
	next := uint64(8)
	end := time.Now().Add(4 * time.Second)
	for time.Now().Before(end) {
		// A burst: 640 KiB, then nothing for 300 ms; a GET more for
		// each MiB read keeps 8 in flight.
		_ = reader.SetReadDeadline(time.Now().Add(5 * time.Second))
		for n := 0; n < 640<<10; {
			m, err := reader.Read(buf)
			if err != nil {
				t.Fatalf("the slow reader, after %d bytes: %v (%d connections closed for the budget)", read, err, p.OutputEvicted())
			}
			n += m
			read += int64(m)
		}
		for ; int64(next-8)<<20 < read; next++ {
			if _, err := reader.Write(gets(1, next)); err != nil {
				t.Fatalf("the slow reader's GET: %v", err)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("slow reader: %d connections closed for the budget meanwhile", p.OutputEvicted())
	if p.OutputEvicted() == 0 {
		t.Errorf("no connection closed for the output budget: the non-readers were not evicted")
	}
}

// TestSubFloorHoldersEvicted: 12 clients GET answers of 60 KiB, never
// read them, and stop once the server holds some of them (the kernel's
// buffers full). Each holds less than BudgetFloor, so
// none pauses for the budget, yet together they hold far more than it
// (a 256 KiB budget here): on a server that keeps answers over 64 KiB
// back beyond 1.5 times the budget, they would keep every large answer
// waiting for as long as they stay. They are evicted like the others,
// those unread longest first, until the budget is back under.
func TestSubFloorHoldersEvicted(t *testing.T) {
	p, b := evictPort(t, 60<<10, 256<<10)
	for range 12 {
		// GETs one at a time until the server holds some of its
		// answers itself (the kernel's buffers are full): then it
		// holds less than one answer, under BudgetFloor.
		nc := dial(t, p)
		_ = nc.SetReadBuffer(4 << 10)
		before := b.Used()
		for i := 0; b.Used() == before; i++ {
			if i == 1000 {
				t.Fatalf("1,000 answers of 60 KiB unread, and the server holds none of them")
			}
			if _, err := nc.Write(gets(1, uint64(i))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	peak := b.Used()
	eventually(t, 5*time.Second, "queued output back within the budget", func() bool { return b.Used() <= 256<<10 })
	t.Logf("queued output: %d after 100 ms, now %d (budget %d); %d connections closed for the budget", peak, b.Used(), 256<<10, p.OutputEvicted())
	if p.OutputEvicted() == 0 {
		t.Errorf("no connection closed for the output budget")
	}
}

// TestDrainedVictimSpared: a reading client is chosen for eviction (from
// another loop, while it held answers over the budget) and reads all it
// held before its own loop closes it. The close would free nothing and
// break an honest client: it is spared, and served on. (Before: closed
// at once; a review found 15 of 33 evicted connections of an honest
// bench holding nothing when closed.) The choice is made here by hand
// (doom), as evict makes it, at the moment the race needs.
func TestDrainedVictimSpared(t *testing.T) {
	p, _ := evictPort(t, 1<<20, 64<<20)
	h := p.h.EventHandler.(*getServer)
	reader := dial(t, p)
	_ = reader.SetReadBuffer(16 << 10)
	if _, err := reader.Write(gets(8, 0)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(reader, 64<<10)
	var fbuf []byte
	read := func(id uint64) {
		t.Helper()
		_ = reader.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := frameio.ReadFrameInto(br, &fbuf)
		if err != nil || f.ID != id {
			t.Fatalf("answer %d: %v (id %d; %d connections closed for the budget)", id, err, f.ID, p.OutputEvicted())
		}
	}
	read(0)
	st := h.last.Load()
	for id := uint64(1); id < 8; id++ {
		read(id)
	}
	eventually(t, 5*time.Second, "the reader's answers drained", func() bool { return st.outSeen.Load() == 0 })
	st.doom(errOutputBudget)
	time.Sleep(50 * time.Millisecond) // (its loop woken meanwhile)
	if _, err := reader.Write(gets(1, 8)); err != nil {
		t.Fatalf("the reader, chosen after it drained: %v", err)
	}
	read(8)
	if n := p.OutputEvicted(); n != 0 {
		t.Errorf("%d connections closed for the budget, want none", n)
	}
}

// TestHeavyReaderSpared: 10 clients keep 4 GETs of 1 MiB in flight each
// and read every answer; once each has read 10 MiB it stops reading for
// 1.1 s every 8 answers (a collector's pause, a scheduler's delay),
// longer than a fresh connection may go without a drain (1 s here).
// The budget (16 MiB) is exceeded all along: another port sharing it
// holds 16.5 MiB. Nobody is closed: a client that read readVolume on its
// connection is a reader, stale only after staleAfter and readerCredit
// without a drain. (Before: closed 100 ms into its first pause, before
// its episode's proof of reading was made; an honest bench of 50
// connections of 16 pipelined 1 MiB GETs lost 19-29 of them in 10 s.)
func TestHeavyReaderSpared(t *testing.T) {
	const budget = 16 << 20
	// A fresh connection's staleness at 1 s, not 100 ms: under make
	// test's load (other packages' tests on both CPUs) a client goroutine
	// went unscheduled past 100 ms, then past 250 ms, before its third
	// answer and was closed as stale (two CI runs), which is the rule,
	// not what this test asks. The pauses (1.1 s) still outlast it: the
	// reader's credit (900 ms more) is what spares them.
	const stale, pause = time.Second, 1100 * time.Millisecond
	b := NewBudget(budget)
	p := listen(t, &getServer{val: make([]byte, 1<<20)}, Config{OutputSoft: 64 << 20, OutputHard: 128 << 20, OutputGrace: time.Minute,
		Budget: b, InputBudget: NewInputBudget(256 << 20), Evict: true, StaleAfter: stale})
	others := int64(budget + 512<<10)
	b.add(others)
	defer b.add(-others)
	const clients, inFlight = 10, 4
	errc := make(chan error, clients)
	end := time.Now().Add(4 * time.Second)
	for c := range clients {
		nc := dial(t, p)
		_ = nc.SetReadBuffer(64 << 10)
		if _, err := nc.Write(gets(inFlight, 0)); err != nil {
			t.Fatal(err)
		}
		go func() {
			br := bufio.NewReaderSize(nc, 64<<10)
			var fbuf []byte
			next := uint64(inFlight)
			for id := uint64(0); time.Now().Before(end); id++ {
				if id >= 10 && id%8 == 0 {
					time.Sleep(pause)
				}
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				f, err := frameio.ReadFrameInto(br, &fbuf)
				if err != nil || f.ID != id {
					errc <- fmt.Errorf("client %d, answer %d: %v (id %d)", c, id, err, f.ID)
					return
				}
				if _, err := nc.Write(gets(1, next)); err != nil {
					errc <- fmt.Errorf("client %d, GET %d: %v", c, next, err)
					return
				}
				next++
			}
			errc <- nil
		}()
	}
	for range clients {
		if err := <-errc; err != nil {
			t.Errorf("%v (%d connections closed for the budget)", err, p.OutputEvicted())
		}
	}
	if n := p.OutputEvicted(); n != 0 {
		t.Errorf("%d connections closed for the budget, want none", n)
	}
}

// TestFreshNonReaderInputCapped: a client pipelines GETs of 1 MiB as
// fast as it can and never reads, on a fresh connection that pauses at
// its first answer (the output budget is spent). It has never read and
// its input is many small requests, so for its first read it gets
// freshMax (1 MiB), not the allowance of a client that reads (half the
// input budget, for firstDrain after its pause; it held 3.4-6.6 MiB of it
// before it was closed): gnet reads its input whether or not it is
// consumed, growing the connection's buffer by copies into fresh memory,
// and 1,000 such clients reconnecting whenever closed spent 40 % of a
// server's CPU there (a profile, session 36).
func TestFreshNonReaderInputCapped(t *testing.T) {
	b := NewBudget(16 << 20)
	ib := NewInputBudget(256 << 20)
	p := listen(t, &getServer{val: make([]byte, 1<<20)}, Config{OutputSoft: 64 << 20, OutputHard: 128 << 20, OutputGrace: time.Minute,
		Budget: b, InputBudget: ib, Evict: true, Requests: wire.CountFrames})
	others := int64(16<<20 + 512<<10)
	b.add(others)
	defer b.add(-others)
	nc := dial(t, p)
	_ = nc.SetReadBuffer(64 << 10)
	var peak atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			peak.Store(max(peak.Load(), ib.Used()))
			time.Sleep(100 * time.Microsecond)
		}
	}()
	batch := gets(1024, 0)
	var sent int64
	_ = nc.SetWriteDeadline(time.Now().Add(3 * time.Second))
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		n, err := nc.Write(batch)
		sent += int64(n)
		if err != nil {
			break
		}
	}
	t.Logf("sent %d KiB before the close; input held at most %d KiB", sent>>10, peak.Load()>>10)
	if p.LimitClosed() == 0 {
		t.Fatalf("the client that never reads was not closed")
	}
	if max := int64(2 << 20); peak.Load() > max {
		t.Errorf("its unread input reached %d KiB, want at most %d KiB (freshMax 1 MiB and reads)", peak.Load()>>10, max>>10)
	}
}

// evictPort listens with eviction for an output budget of budget bytes
// and answers every GET with val bytes; the connections' own limits are
// far out of the way.
func evictPort(t *testing.T, val, budget int64) (*Port, *Budget) {
	t.Helper()
	b := NewBudget(budget)
	p := listen(t, &getServer{val: make([]byte, val)}, Config{OutputSoft: 64 << 20, OutputHard: 128 << 20, OutputGrace: time.Minute,
		Budget: b, InputBudget: NewInputBudget(256 << 20), Evict: true})
	return p, b
}

// TestFreshReaderOfManySmallWrites: an honest client on a fresh
// connection pipelines 100 GETs of 1 MiB and then 300 PUTs of 2 KiB (627
// KiB), and starts reading 40 ms later. Its input is many small requests
// and it has not read yet when it pauses at its first answers, yet it
// must be served, not closed: 78f10f4 gave such a connection InboundCap
// (as to a client that never reads) and closed it within 8 ms, before
// any answer was written (a review: 2 of 2 runs, and 5 of 8 with 20-50
// GETs; a Go client of 64 GET and 512 PUT goroutines lost 0-2
// connections a run). It keeps an allowance for its first read, a
// smaller one (freshMax) than a client that shows it reads.
func TestFreshReaderOfManySmallWrites(t *testing.T) {
	// The client reads 40 ms late; the port waits 250 ms for a first
	// read, not 50 (under make test's load the client's goroutine ran
	// past 50 ms once and was closed: the rule, not what this asks).
	p := listen(t, &getServer{val: make([]byte, 1<<20)}, Config{OutputSoft: 2 << 20, OutputHard: 32 << 20, OutputGrace: 10 * time.Second,
		Budget: NewBudget(32 << 20), InputBudget: NewInputBudget(64 << 20), Evict: true, Requests: wire.CountFrames,
		FirstDrain: 250 * time.Millisecond})
	const nGets, nPuts = 100, 300
	batch := gets(nGets, 0)
	for i := range nPuts {
		batch = wire.Append(batch, &wire.Frame{Op: wire.OpPut, ID: uint64(nGets + i), Key: []byte("k"), Value: make([]byte, 2<<10)})
	}
	for run := range 3 {
		nc := dial(t, p)
		if _, err := nc.Write(batch); err != nil {
			t.Fatal(err)
		}
		time.Sleep(40 * time.Millisecond)
		br := bufio.NewReaderSize(nc, 64<<10)
		var fbuf []byte
		for i := range nGets + nPuts {
			nextAnswer(t, nc, br, &fbuf, p, fmt.Sprintf("run %d", run), uint64(i))
		}
		nc.Close()
	}
	if p.LimitClosed() != 0 {
		t.Errorf("closed for a limit: %d", p.LimitClosed())
	}
}
