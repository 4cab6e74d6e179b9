package server

import (
	"testing"
	"time"
)

func TestLeaseTracker(t *testing.T) {
	lt := newLeaseTracker(time.Second)
	t0 := time.Unix(100, 0)
	a := lt.sending(t0)
	b := lt.sending(t0.Add(200 * time.Millisecond))
	if lt.valid(t0.UnixNano()) {
		t.Fatal("valid before any answer")
	}
	lt.answered(b, true)
	if !lt.valid(t0.Add(1100*time.Millisecond).UnixNano()) || lt.valid(t0.Add(1200*time.Millisecond).UnixNano()) {
		t.Fatal("the lease must run from b's sent-time for one lease")
	}
	lt.answered(a, true) // late: its sent-time was dropped with b's answer
	if lt.valid(t0.Add(1200 * time.Millisecond).UnixNano()) {
		t.Fatal("a late answer must not renew")
	}
	c := lt.sending(t0.Add(time.Second))
	lt.answered(c, false)
	if lt.valid(t0.Add(1500 * time.Millisecond).UnixNano()) {
		t.Fatal("a refusal must not renew")
	}
	if len(lt.sent) != 0 {
		t.Fatalf("%d sent-times left", len(lt.sent))
	}
}
