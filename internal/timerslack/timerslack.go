//go:build linux

// Package timerslack sets the timer slack of a whole process.
//
// Timer slack is how late Linux may wake a thread from a timed sleep so
// that wake-ups can be grouped; the default is 50 µs. The Go runtime's
// monitor thread (sysmon) sleeps 20 µs at a time while an event loop is
// blocked in a system call, so on a busy server it wakes tens of thousands
// of times a second, each a context switch. A slack of a millisecond lets
// it sleep about that long instead; no timer of the storage server needs
// more precision (heartbeats every 100 ms, leases checked against the
// clock, not timers).
//
// A thread's slack is inherited by the threads it creates and kept across
// execve, but the runtime's threads already run when main starts and a
// thread may only set its own. Ensure therefore sets the calling thread's
// slack and executes the program again, once.
package timerslack

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// envDone marks the re-executed program, so it never loops.
const envDone = "FTKV_TIMERSLACK_APPLIED"

// Thread is the calling thread's timer slack (that of the OS thread the
// goroutine runs on; lock it to ask about a particular one).
func Thread() (time.Duration, error) {
	ns, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("prctl(PR_GET_TIMERSLACK): %w", err)
	}
	return time.Duration(ns), nil
}

// Ensure gives every thread of this process the timer slack d: it sets
// the calling thread's slack and re-executes the program, whose threads
// then all inherit it. It returns nil in the re-executed program (or when
// d <= 0: nothing to do), an error when it could not re-execute, and does
// not return otherwise. Call it first thing in main, with nothing
// opened or started that the new image would not redo.
func Ensure(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	if os.Getenv(envDone) != "" {
		os.Unsetenv(envDone)
		return nil // re-executed: whatever the kernel kept is what we get
	}
	// (Reading the other threads' slack needs CAP_SYS_NICE: always set
	// it and re-execute, which costs a few milliseconds once.)
	runtime.LockOSThread() // prctl and execve on the same thread
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_TIMERSLACK): %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), envDone+"=1")
	return fmt.Errorf("re-executing %s: %w", exe, syscall.Exec(exe, os.Args, env))
}
