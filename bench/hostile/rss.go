package hostile

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"ftkv/internal/accept"
)

// ReadRSS returns the resident set size (VmRSS) of process pid on this
// machine, in bytes, from /proc/<pid>/status.
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Bytes()
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmRSS line (a kernel thread or a zombie)")
}

// RSS is a process's resident memory over a probe.
type RSS struct {
	PID                 int
	Before, Peak, After int64 // bytes; After is 0 when the process is gone
	Samples             int
	Gone                bool // the process exited (or became a zombie) during the watch
}

// Growth is how far the peak rose above the start.
func (r RSS) Growth() int64 { return r.Peak - r.Before }

func (r RSS) String() string {
	s := fmt.Sprintf("pid %d RSS before %s, peak %s (+%s), after %s", r.PID, Bytes(r.Before), Bytes(r.Peak), Bytes(r.Growth()), Bytes(r.After))
	if r.Gone {
		s += " (process gone)"
	}
	return s
}

// RSSWatch samples one process's RSS in the background.
type RSSWatch struct {
	mu   sync.Mutex
	r    RSS
	stop chan struct{}
	done chan struct{}
}

// WatchRSS samples pid's RSS now and then every interval (10ms when 0)
// until Stop.
func WatchRSS(pid int, interval time.Duration) (*RSSWatch, error) {
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	v, err := ReadRSS(pid)
	if err != nil {
		return nil, err
	}
	w := &RSSWatch{r: RSS{PID: pid, Before: v, Peak: v, Samples: 1}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				if !w.sample() {
					return
				}
			}
		}
	}()
	return w, nil
}

// sample records one reading; false once the process is gone.
func (w *RSSWatch) sample() bool {
	v, err := ReadRSS(w.r.PID)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.r.Gone = true
		return false
	}
	w.r.Samples++
	w.r.Peak = max(w.r.Peak, v)
	w.r.After = v
	return true
}

// Now returns the figures so far.
func (w *RSSWatch) Now() RSS {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.r
}

// Stop ends the sampling, takes the After reading and returns the figures.
func (w *RSSWatch) Stop() RSS {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	gone := w.r.Gone
	w.mu.Unlock()
	if !gone {
		w.sample()
	}
	r := w.Now()
	if r.Gone {
		r.After = 0
	}
	return r
}

// RaiseNoFile raises this process's soft RLIMIT_NOFILE to its hard limit
// and returns both as they are afterwards.
func RaiseNoFile() (soft, hard uint64, err error) { return accept.RaiseNoFile() }
