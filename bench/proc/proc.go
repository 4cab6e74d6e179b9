// Package proc holds the load generator's helpers for local server
// processes: whether a status entry is an ftkv server running here (the
// only kind it ever signals), kill -9, waiting for the exit and reading
// the resident set size.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ftkv/internal/hostname"
	"ftkv/status"
)

// ErrNotLocal refuses to kill a server that does not run on this machine
// as an ftkv server process.
var ErrNotLocal = errors.New("not a local ftkv server process")

// IsServerCmdline reports whether args (a process's command line) is an
// ftkv server with the given id, as the coordinator spawns it: "-id <id>"
// and a "-coord" flag.
func IsServerCmdline(args []string, id int) bool {
	want := strconv.Itoa(id)
	hasID, hasCoord := false, false
	for i, a := range args {
		switch a {
		case "-id", "--id":
			hasID = hasID || (i+1 < len(args) && args[i+1] == want)
		case "-coord", "--coord":
			hasCoord = true
		}
		if a == "-id="+want || a == "--id="+want {
			hasID = true
		}
	}
	return hasID && hasCoord
}

// CheckLocalServer returns nil when s runs here (a host the coordinator
// spawns locally) as the ftkv server with its id, so that its pid may be
// signalled.
func CheckLocalServer(s status.Server) error {
	if !hostname.IsLocal(s.Host) {
		return fmt.Errorf("server %d on host %q: %w", s.ID, s.Host, ErrNotLocal)
	}
	if s.PID <= 0 {
		return fmt.Errorf("server %d has no pid in the status: %w", s.ID, ErrNotLocal)
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID))
	if err != nil {
		return fmt.Errorf("server %d pid %d: %v: %w", s.ID, s.PID, err, ErrNotLocal)
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if !IsServerCmdline(args, s.ID) {
		return fmt.Errorf("server %d pid %d runs %q: %w", s.ID, s.PID, strings.Join(args, " "), ErrNotLocal)
	}
	return nil
}

// Kill9 sends SIGKILL to pid (checked with CheckLocalServer first).
func Kill9(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 %d: %w", pid, err)
	}
	return nil
}

// Gone reports whether pid has exited (gone or a zombie).
func Gone(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(raw, ')')
	return i < 0 || i+2 >= len(raw) || raw[i+2] == 'Z' || raw[i+2] == 'X'
}

// WaitGone waits until pid has exited, looking every millisecond (the
// write gap is measured from the moment the process is gone).
func WaitGone(ctx context.Context, pid int) error {
	for !Gone(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pid %d still running after SIGKILL: %w", pid, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// ParseVmRSS returns the VmRSS of a /proc/<pid>/status text, in bytes.
func ParseVmRSS(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("bad VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad VmRSS line %q", line)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line")
}

// ReadRSS returns the resident set size of a local process in bytes.
func ReadRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return ParseVmRSS(raw)
}
