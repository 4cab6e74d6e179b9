// Package nethost gives a test hosts of its own: network namespaces joined
// by a private bridge, each with its own address and its own sshd that
// accepts only the test's key (scripts/testhosts.sh does the work). They
// are torn down when the test ends, also when it fails.
//
// Creating them needs root. Without root (a developer's laptop) the test
// is skipped with a line that says why; with FTKV_REQUIRE_NETNS=1 (set by
// .ci/run, which runs as root) it fails instead, so CI never skips it.
package nethost

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Hosts is a set of namespace hosts numbered 1..N.
type Hosts struct {
	t      testing.TB
	Dir    string // keys, known_hosts, sshd configs and logs
	N      int
	script string
}

func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "testhosts.sh")
}

// Up creates n hosts for t.
func Up(t testing.TB, n int) *Hosts {
	t.Helper()
	require := os.Getenv("FTKV_REQUIRE_NETNS") == "1"
	skip := func(why string) {
		if require {
			t.Fatalf("namespace hosts unavailable (%s) but FTKV_REQUIRE_NETNS=1", why)
		}
		t.Skipf("SKIP: namespace hosts need %s; this test runs in CI (as root)", why)
	}
	if os.Geteuid() != 0 {
		skip("root")
	}
	for _, tool := range []string{"ip", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip(tool)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		skip("openssh-server (/usr/sbin/sshd)")
	}
	h := &Hosts{t: t, Dir: t.TempDir(), N: n, script: script()}
	t.Cleanup(func() {
		if out, err := exec.Command(h.script, "down", h.Dir).CombinedOutput(); err != nil {
			t.Errorf("testhosts down: %v\n%s", err, out)
		}
	})
	out, err := exec.Command(h.script, "up", h.Dir, strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("testhosts up: %v\n%s", err, out)
	}
	t.Logf("namespace hosts up (real sshd, key-only):\n%s", strings.TrimSpace(string(out)))
	return h
}

func (h *Hosts) run(args ...string) string {
	h.t.Helper()
	out, err := exec.Command(h.script, append([]string{args[0], h.Dir}, args[1:]...)...).CombinedOutput()
	if err != nil {
		h.t.Fatalf("testhosts %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Addr is host i's address.
func (h *Hosts) Addr(i int) string { return h.run("addr", strconv.Itoa(i)) }

// Dest is host i's ssh destination (root@addr).
func (h *Hosts) Dest(i int) string { return "root@" + h.Addr(i) }

// NS is host i's namespace name.
func (h *Hosts) NS(i int) string { return h.run("ns", strconv.Itoa(i)) }

// Config is a cluster file with hosts 1..servers as servers and the rest
// as spares, plus the ssh key and known-hosts settings.
func (h *Hosts) Config(servers int) string { return h.run("config", strconv.Itoa(servers)) + "\n" }

// Identity and KnownHosts are the client key and the known-hosts file.
func (h *Hosts) Identity() string   { return filepath.Join(h.Dir, "id_ed25519") }
func (h *Hosts) KnownHosts() string { return filepath.Join(h.Dir, "known_hosts") }

// AuthorizedKeys is the file host i's sshd reads the accepted keys from.
func (h *Hosts) AuthorizedKeys(i int) string {
	return filepath.Join(h.Dir, fmt.Sprintf("authorized_keys_h%d", i))
}

// Exec runs a command inside host i's namespace.
func (h *Hosts) Exec(i int, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.NS(i)}, args...)...).CombinedOutput()
	return string(out), err
}

// PIDs lists the processes running in host i's namespace.
func (h *Hosts) PIDs(i int) []int {
	out, err := exec.Command("ip", "netns", "pids", h.NS(i)).Output()
	if err != nil {
		h.t.Fatalf("ip netns pids: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// Runs reports whether pid is a process on host i.
func (h *Hosts) Runs(i, pid int) bool {
	for _, p := range h.PIDs(i) {
		if p == pid {
			return true
		}
	}
	return false
}

// Kill9 sends SIGKILL to pid from inside host i's namespace, after checking
// that the process is on that host.
func (h *Hosts) Kill9(i, pid int) {
	h.t.Helper()
	if err := h.Signal(i, pid, "KILL"); err != nil {
		h.t.Fatal(err)
	}
}

// Signal sends sig (a kill(1) name: KILL, STOP, CONT) to pid from inside
// host i's namespace, after checking that the process is on that host; it
// returns an error (and does not fail the test) when it is not, or when
// kill fails.
func (h *Hosts) Signal(i, pid int, sig string) error {
	h.t.Helper()
	if !h.Runs(i, pid) {
		return fmt.Errorf("pid %d is not on host %d", pid, i)
	}
	if out, err := h.Exec(i, "kill", "-s", sig, strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("kill -s %s %d on host %d: %v %s", sig, pid, i, err, out)
	}
	return nil
}

// HostDown kills every process on host i (its sshd too) and takes its link
// down: the machine is gone.
func (h *Hosts) HostDown(i int) { h.run("hostdown", strconv.Itoa(i)) }

// Unplug and Plug take host i's link down and up; its processes go on.
func (h *Hosts) Unplug(i int) { h.run("unplug", strconv.Itoa(i)) }
func (h *Hosts) Plug(i int)   { h.run("plug", strconv.Itoa(i)) }

// Partition drops all traffic between host i and addr (both ways: host i
// can neither send to addr nor answer it); Heal undoes it.
func (h *Hosts) Partition(i int, addr string) { h.run("partition", strconv.Itoa(i), addr) }
func (h *Hosts) Heal(i int, addr string)      { h.run("heal", strconv.Itoa(i), addr) }

// Isolate partitions host i from every address in addrs (Partition for
// each) and returns the function that heals them all. The heal runs at
// most once, and when the test ends if the test has not run it.
func (h *Hosts) Isolate(i int, addrs ...string) (heal func()) {
	h.t.Helper()
	var cut []string
	var once sync.Once
	heal = func() {
		once.Do(func() {
			for _, a := range cut {
				h.Heal(i, a)
			}
		})
	}
	h.t.Cleanup(heal)
	for _, a := range addrs {
		h.Partition(i, a)
		cut = append(cut, a)
	}
	return heal
}
