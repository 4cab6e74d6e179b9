package connlimit

import (
	"bufio"
	"testing"
	"time"

	"ftkv/internal/frameio"
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
	h := &getServer{val: make([]byte, 1<<20)}
	b := NewBudget(2 << 20)
	p := listen(t, h, Config{OutputSoft: 64 << 20, OutputHard: 128 << 20, OutputGrace: time.Minute, Budget: b,
		InputBudget: NewInputBudget(256 << 20), Evict: true})
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
