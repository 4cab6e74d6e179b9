package testcluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// FreePorts returns n TCP ports free on 127.0.0.1 right now (for configs
// with fixed ports).
func FreePorts(t testing.TB, n int) []int { return freePorts(t, n) }

// freePorts returns n distinct loopback ports that were free a moment
// ago, taken below the kernel's range of ephemeral ports. A port from
// that range (what a listen on port 0 gives) can be taken by any
// outgoing connection once its listener is closed: a coordinator killed
// and started again on its fixed Raft port found it "in use" on a CI run,
// taken by a connection some other test had dialled meanwhile.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	lo, hi := fixedPortRange()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000*n {
			t.Fatalf("testcluster: no %d free ports in [%d, %d) after %d tries", n, lo, hi, tries)
		}
		p := lo + rand.IntN(hi-lo)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	return ports
}

// fixedPortRange is where freePorts picks: [10000, the first ephemeral
// port), or, if the kernel's range leaves too little room below it,
// above the last ephemeral port.
func fixedPortRange() (lo, hi int) {
	first, last := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var f, l int
		if _, err := fmt.Sscan(string(b), &f, &l); err == nil && f > 0 && l >= f {
			first, last = f, l
		}
	}
	if first-10000 >= 4096 {
		return 10000, first
	}
	if 65536-(last+1) >= 1024 {
		return last + 1, 65536
	}
	return 1024, 65536 // no room outside the range: any port, as before
}
