//go:build linux

package sched

import (
	"os"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// policies lists the policy of every thread of this process.
func policies(t *testing.T) map[int]int {
	t.Helper()
	names, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, n := range names {
		tid, _ := strconv.Atoi(n.Name())
		if p, err := Thread(tid); err == nil {
			out[tid] = p
		}
	}
	return out
}

// onNewThread runs f on a thread of its own that exits afterwards (a
// goroutine that ends locked takes its thread with it).
func onNewThread(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		f()
		close(done)
	}()
	<-done
}

func TestApply(t *testing.T) {
	if err := Check("fifo"); err == nil {
		t.Fatal(`Check("fifo") = nil, want an error`)
	}
	if err := Apply("fast"); err == nil {
		t.Fatal(`Apply("fast") = nil, want an error`)
	}
	if p, err := Thread(0); err != nil || p != unix.SCHED_NORMAL {
		t.Skipf("this test starts as %s (%v), not SCHED_OTHER", Name(p), err)
	}
	if err := Apply(Normal); err != nil {
		t.Fatal(err)
	}
	for tid, p := range policies(t) {
		if p != unix.SCHED_NORMAL {
			t.Fatalf("after Apply(Normal) thread %d is %s", tid, Name(p))
		}
	}

	// A thread the operator made SCHED_IDLE keeps its policy.
	idle := make(chan int)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		tid := unix.Gettid()
		param := schedParam{}
		if err := schedSet(tid, unix.SCHED_IDLE, &param); err != nil {
			t.Errorf("SCHED_IDLE: %v", err)
		}
		idle <- tid
		<-release // and exit locked: the thread goes with it
	}()
	idleTID := <-idle
	defer close(release)

	if err := Apply(Batch); err != nil {
		t.Fatal(err)
	}
	got := policies(t)
	for tid, p := range got {
		want := unix.SCHED_BATCH
		if tid == idleTID {
			want = unix.SCHED_IDLE
		}
		if p != want {
			t.Errorf("thread %d: %s, want %s", tid, Name(p), Name(want))
		}
	}
	// Threads created afterwards inherit the policy.
	var fresh, freshTID int
	onNewThread(func() { freshTID = unix.Gettid(); fresh, _ = Thread(0) })
	if _, old := got[freshTID]; !old && fresh != unix.SCHED_BATCH {
		t.Errorf("a thread started after Apply (%d) is %s, want SCHED_BATCH", freshTID, Name(fresh))
	}
	t.Logf("%d threads SCHED_BATCH, the SCHED_IDLE one kept", len(got)-1)
}
