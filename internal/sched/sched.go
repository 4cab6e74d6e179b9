//go:build linux

// Package sched sets the Linux scheduling policy of a whole process.
//
// ftkv's processes exchange many small messages: a gateway forwards a
// batch to a primary, the primary to its secondary, the acknowledgement
// comes back. Under the default policy (SCHED_OTHER) each message wakes
// its receiver, and where processes share a CPU the woken one preempts
// the sender in the middle of its batch, so both work in small pieces and
// pay a context switch and a system call per piece. SCHED_BATCH keeps
// the same share of the CPU (the nice value is unchanged) but does not
// preempt on wake-up: the sender finishes its batch, the receiver then
// reads all of it at once. docs/BENCHMARKS.md measures both.
//
// A process whose policy the operator changed (chrt: real-time, idle) is
// left as it is: only SCHED_OTHER threads become SCHED_BATCH.
package sched

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Apply gives every thread of this process the policy: Batch turns each
// SCHED_OTHER thread into SCHED_BATCH (threads created later inherit it
// from their creator); Normal changes nothing.
func Apply(policy string) error {
	if err := Check(policy); err != nil {
		return err
	}
	if policy == Normal {
		return nil
	}
	// The runtime may start a thread while we walk the list, cloned from
	// one not yet switched: walk until a pass changes nothing.
	for pass := 0; pass < 10; pass++ {
		changed, err := batchAll()
		if err != nil || changed == 0 {
			return err
		}
	}
	return nil
}

// batchAll switches every SCHED_OTHER thread listed now; it returns how
// many it switched.
func batchAll() (int, error) {
	d, err := os.Open("/proc/self/task")
	if err != nil {
		return 0, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, err
	}
	changed := 0
	for _, name := range names {
		tid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		p, err := Thread(tid)
		if err != nil {
			continue // the thread exited meanwhile
		}
		if p != unix.SCHED_NORMAL {
			continue
		}
		param := schedParam{}
		if err := schedSet(tid, unix.SCHED_BATCH, &param); err != nil {
			if err == unix.ESRCH {
				continue
			}
			return changed, fmt.Errorf("sched_setscheduler(%d, SCHED_BATCH): %w", tid, err)
		}
		changed++
	}
	return changed, nil
}

// schedParam is struct sched_param (a priority, 0 for the fair policies).
type schedParam struct{ priority int32 }

// schedSet is sched_setscheduler(2), which keeps the thread's nice value
// (sched_setattr would set it from its argument).
func schedSet(tid, policy int, p *schedParam) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, uintptr(tid), uintptr(policy), uintptr(unsafe.Pointer(p))); e != 0 {
		return e
	}
	return nil
}

// Thread is the policy of thread (or process) tid: unix.SCHED_NORMAL,
// unix.SCHED_BATCH, …
func Thread(tid int) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_SCHED_GETSCHEDULER, uintptr(tid), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Name is a policy's name as chrt prints it.
func Name(policy int) string {
	switch policy {
	case unix.SCHED_NORMAL:
		return "SCHED_OTHER"
	case unix.SCHED_BATCH:
		return "SCHED_BATCH"
	case unix.SCHED_IDLE:
		return "SCHED_IDLE"
	case unix.SCHED_FIFO:
		return "SCHED_FIFO"
	case unix.SCHED_RR:
		return "SCHED_RR"
	}
	return "policy " + strconv.Itoa(policy)
}
