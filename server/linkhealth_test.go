package server

import (
	"testing"
	"time"
)

// A primary reports how long its secondary has not answered; any answer
// (an acknowledgement, a ping's, a refused HELLO) resets it, and a shard
// without a secondary reports nothing.
func TestLinkHealth(t *testing.T) {
	p, _ := testPrimary(t)
	now := time.Now()
	if _, ok := p.linkHealth(now); ok {
		t.Fatal("a primary without a secondary reported its link")
	}
	p.mu.Lock()
	p.setSecLocked(target{addr: "127.0.0.1:1", id: 4, inc: 7})
	p.mu.Unlock()
	p.heard.Store(mono(now.Add(-3 * time.Second)))
	h, ok := p.linkHealth(now)
	if !ok || h.Secondary != 4 || h.Incarnation != 7 || h.Shard != 0 || h.Stalled < 3*time.Second {
		t.Fatalf("silent secondary: %+v %v", h, ok)
	}
	p.pingAcked(1)
	if h, _ := p.linkHealth(now); h.Stalled != 0 {
		t.Fatalf("after an answer: stalled %s", h.Stalled)
	}
	p.mu.Lock()
	p.closeLocked()
	p.mu.Unlock()
	if _, ok := p.linkHealth(now); ok {
		t.Fatal("a closed primary reported its link")
	}
}
