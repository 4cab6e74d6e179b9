//go:build linux

package timerslack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const helperEnv = "FTKV_TIMERSLACK_HELPER"

// TestMain doubles as the helper program: with helperEnv set it calls
// Ensure like a server's main and reports the slack of its threads.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "" {
		os.Exit(m.Run())
	}
	pid := os.Getpid()
	if err := Ensure(time.Millisecond); err != nil {
		fmt.Println("ensure:", err)
		os.Exit(1)
	}
	fmt.Println("pid", pid, os.Getpid(), "marker", os.Getenv(envDone) != "")
	// New threads, created now, must inherit the slack.
	done := make(chan string)
	for i := 0; i < 4; i++ {
		go func() {
			runtime.LockOSThread()
			d, err := Thread()
			done <- fmt.Sprint("thread ", d, " ", err)
			time.Sleep(50 * time.Millisecond) // keep the thread busy: the next goroutine gets another
		}()
	}
	for i := 0; i < 4; i++ {
		fmt.Println(<-done)
	}
	// Threads that already ran (the runtime's own) can only be read with
	// CAP_SYS_NICE, as root.
	tasks, _ := filepath.Glob("/proc/self/task/*")
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", filepath.Base(t), "timerslack_ns"))
		if err != nil {
			fmt.Println("task unreadable:", err)
			continue
		}
		fmt.Println("task", strings.TrimSpace(string(b)))
	}
	os.Exit(0)
}

func TestEnsureReexecutesOnceWithTheSlack(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var pidLine string
	threads, tasks, unreadable := 0, 0, 0
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "pid "):
			pidLine = l
		case strings.HasPrefix(l, "thread "):
			threads++
			if l != "thread 1ms <nil>" {
				t.Errorf("a thread started after Ensure: %q, want 1ms", l)
			}
		case strings.HasPrefix(l, "task unreadable"):
			unreadable++
		case strings.HasPrefix(l, "task "):
			tasks++
			if l != "task 1000000" {
				t.Errorf("a thread of the re-executed program: %q, want 1000000 ns", l)
			}
		}
	}
	// The same process (execve keeps the pid), and the marker is gone so
	// the server's own children do not inherit it.
	f := strings.Fields(pidLine)
	if len(f) != 5 || f[1] != f[2] || f[4] != "false" {
		t.Fatalf("pid line %q: want the same pid before and after, marker cleared\n%s", pidLine, out)
	}
	if threads != 4 {
		t.Fatalf("%d thread lines, want 4\n%s", threads, out)
	}
	if tasks == 0 {
		if os.Geteuid() == 0 {
			t.Fatalf("running as root but no thread's slack could be read\n%s", out)
		}
		t.Logf("not root: the runtime's own threads (%d) could not be read; checked the 4 new ones", unreadable)
	} else {
		t.Logf("ran: all %d threads of the re-executed helper have 1ms of slack", tasks)
	}
}

func TestEnsureZeroDoesNothing(t *testing.T) {
	before, err := Thread()
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(0); err != nil { // must return: no re-execution
		t.Fatal(err)
	}
	if after, _ := Thread(); after != before {
		t.Fatalf("slack %v -> %v", before, after)
	}
}
