package server

import (
	"testing"
	"time"

	"ftkv/wire"
)

// A session evicted early (max_sessions) whose mark is dropped (marks
// overflow), reopened by a newer write of the same client, then a retry
// of the forgotten write within the client's retry window: it must be
// refused (SESSION_EXPIRED), never applied twice (found by review).
func TestLostMarkReopenedSession(t *testing.T) {
	d, clk := newTestDedup(SessionConfig{TTL: time.Minute, MaxSessions: dedupStripes}) // one per stripe
	ids := sameStripe(d, 4)
	x, h1, h2 := ids[0], ids[1], ids[2]
	o, cl := d.claim(0, x, 5, 5, 0) // x's write seq 5: applied; its answer is lost
	if cl != claimNew {
		t.Fatal(cl)
	}
	o.done.Store(true)
	clk.add(time.Second)
	d.claim(0, h1, 1, 1, 0) // evicts x (mark 5)
	d.claim(0, h2, 1, 1, 0) // evicts h1; h1's mark drops x's mark (lost)
	clk.add(time.Second)
	// Another goroutine of x writes seq 6 (first attempt, no RETRY flag).
	if _, cl := d.claim(0, x, 6, 5, 0); cl != claimNew {
		t.Fatalf("seq 6: %v", cl)
	}
	// x retries seq 5 (RETRY), 2 s after first sending it (TTL 1 min).
	if _, cl := d.claim(0, x, 5, 5, wire.FlagRetry); cl == claimNew {
		t.Fatalf("retry of seq 5 after its session was forgotten early: %v: APPLIED TWICE", cl)
	}
}

// Re-seeding carries a stripe's dropped marks: a retry of a client the
// sender had forgotten early is refused on the re-seeded server too
// (found by review: it was a new write there).
func TestLostMarksCarriedBySeed(t *testing.T) {
	a, clk := newTestDedup(SessionConfig{TTL: time.Minute, MaxSessions: dedupStripes})
	ids := sameStripe(a, 4)
	x, h1, h2 := ids[0], ids[1], ids[2]
	o, _ := a.claim(0, x, 5, 5, 0)
	o.done.Store(true)
	clk.add(time.Second)
	a.claim(0, h1, 1, 1, 0)
	a.claim(0, h2, 1, 1, 0)
	if _, cl := a.claim(0, x, 5, 5, wire.FlagRetry); cl != claimExpired {
		t.Fatalf("sender: %v", cl)
	}
	b, _ := newTestDedup(SessionConfig{TTL: time.Minute, MaxSessions: dedupStripes})
	for _, c := range a.snapshot(0) {
		if err := b.restore(c, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, cl := b.claim(0, x, 5, 5, wire.FlagRetry); cl == claimNew {
		t.Fatalf("re-seeded server: retry of seq 5: %v: APPLIED TWICE", cl)
	}
}
