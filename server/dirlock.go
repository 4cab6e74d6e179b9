package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ftkv/internal/wal"
)

// lockFile is the data directory's lock: the process that holds it (a
// POSIX write lock on the file, released by the kernel when the process
// dies, however it dies) is the only one that opens the directory's log
// and snapshots. (A POSIX lock is the process's: servers a test runs in
// one process share it, as they did the directory before. It is also
// released when the process closes any descriptor of the file: only
// lockDataDir opens it.)
// Two processes on one directory damage each other's log: recovery trims
// and deletes the segments the other one writes. An attack saw it happen
// twice (a deposed coordinator, stopped in the middle of a respawn and
// continued after the new leader's respawn, spawned an incarnation the
// cluster no longer counted; a second cluster started by mistake in the
// same working directory).
const lockFile = "LOCK"

// lockPoll is how often a locked directory is tried again.
// timing: exception — a poll of a local file lock, unrelated to failure detection.
const lockPoll = 20 * time.Millisecond

// lockDataDir takes dir's lock, waiting up to wait for a process that
// holds it (a killed incarnation about to be gone), and writes this
// process's pid into it. The lock holds until the file is closed.
func lockDataDir(dir string, wait time.Duration) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, wal.FileMode)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = unix.FcntlFlock(f.Fd(), unix.F_SETLK, &unix.Flock_t{Type: unix.F_WRLCK, Whence: 0})
		if err == nil {
			break
		}
		held := errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES)
		if !held || time.Now().After(deadline) {
			f.Close()
			if held {
				return nil, fmt.Errorf("data dir %s is in use by another server process%s (waited %s for it to exit)", dir, holder(path), wait)
			}
			return nil, fmt.Errorf("data dir lock %s: %w", path, err)
		}
		time.Sleep(lockPoll)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// dirGone reports whether the data directory's lock file was unlinked
// while this process holds it: the directory was deleted (or moved away
// and replaced) under the running server. Its log still takes writes, into
// files nobody will find at the next start: the log is failed instead, so
// writes are refused and the coordinator moves the server's copies (an
// attack deleted a live server's directory and it went on acknowledging).
func dirGone(lock *os.File, dir string) bool {
	var st unix.Stat_t
	if lock == nil || unix.Fstat(int(lock.Fd()), &st) != nil {
		return false
	}
	if st.Nlink == 0 {
		return true
	}
	var now unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, lockFile), &now); err != nil {
		return errors.Is(err, unix.ENOENT)
	}
	return now.Ino != st.Ino || now.Dev != st.Dev
}

// holder names the pid written in the lock file at path, if any.
func holder(path string) string {
	b, err := os.ReadFile(path)
	if pid := strings.TrimSpace(string(b)); err == nil && pid != "" {
		return " (pid " + pid + ")"
	}
	return ""
}
