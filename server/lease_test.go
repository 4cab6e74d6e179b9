package server

import (
	"testing"
	"time"
)

func TestLeaseTracker(t *testing.T) {
	lt := newLeaseTracker(time.Second)
	t0 := time.Now() // carries a monotonic reading, as every time the server uses
	a := lt.sending(t0)
	b := lt.sending(t0.Add(200 * time.Millisecond))
	if lt.valid(t0) {
		t.Fatal("valid before any answer")
	}
	lt.answered(b, true)
	if !lt.valid(t0.Add(1100*time.Millisecond)) || lt.valid(t0.Add(1200*time.Millisecond)) {
		t.Fatal("the lease must run from b's sent-time for one lease")
	}
	lt.answered(a, true) // late: its sent-time was dropped with b's answer
	if lt.valid(t0.Add(1200 * time.Millisecond)) {
		t.Fatal("a late answer must not renew")
	}
	c := lt.sending(t0.Add(time.Second))
	lt.answered(c, false)
	if lt.valid(t0.Add(1500 * time.Millisecond)) {
		t.Fatal("a refusal must not renew")
	}
	if len(lt.sent) != 0 {
		t.Fatalf("%d sent-times left", len(lt.sent))
	}
}

// The lease is kept on the monotonic clock (a wall-clock step cannot move
// it): it runs one lease from the sent-time's monotonic reading. A step of
// the host's wall clock cannot be made inside a test process; that leases
// never read the wall clock is what this pins down.
func TestLeaseMonotonic(t *testing.T) {
	lt := newLeaseTracker(time.Second)
	t0 := time.Now()
	lt.answered(lt.sending(t0), true)
	if got := time.Duration(lt.until.Load() - mono(t0)); got != time.Second {
		t.Fatalf("lease runs %s from its sent-time on the monotonic clock, want 1s", got)
	}
	later := t0.Add(2 * time.Second)
	if lt.valid(later) {
		t.Fatal("valid after the lease on the monotonic clock")
	}
	if mono(later)-mono(t0) != int64(2*time.Second) {
		t.Fatal("mono does not follow the monotonic clock")
	}
}
