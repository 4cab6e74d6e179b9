package coord

import (
	"testing"
	"time"
)

// TestReleasedWatcherEnds: a watcher of a server this coordinator did
// not start (a pid it re-adopted) ends when it is released (another
// leader watches the server now) without reporting an exit or killing
// the server; before, every takeover left one polling per server for
// good. One that is not released still reports the exit.
func TestReleasedWatcherEnds(t *testing.T) {
	c := testCoordinator(t)
	srv := startFakeServer(t, 0, 1)
	p := watchPID(srv.Process.Pid, 0, 1, 5*time.Millisecond)
	ended := make(chan struct{})
	go func() { c.watchExit(c.nodes[0], 1, p); close(ended) }()
	release(p)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the released watcher still waits for the server's exit")
	}
	select {
	case <-p.Done():
		t.Fatal("released: Done closed, as if the server had exited")
	default:
	}
	if !alive(srv.Process.Pid) {
		t.Fatal("the release killed the server")
	}
	if c.nodes[0].exited != 0 {
		t.Fatalf("the release recorded an exit of incarnation %d", c.nodes[0].exited)
	}

	// Not released, the exit is seen.
	q := watchPID(srv.Process.Pid, 0, 1, 5*time.Millisecond)
	_ = srv.Process.Kill()
	select {
	case <-q.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the server's exit was not seen")
	}
}
