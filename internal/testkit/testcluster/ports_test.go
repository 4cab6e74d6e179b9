package testcluster

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// TestFreePortsOutsideEphemeralRange: the fixed ports the tests give
// coordinators and servers lie outside the kernel's ephemeral range, so
// that no outgoing connection can take one while its owner is restarted.
func TestFreePortsOutsideEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skipf("no ephemeral range to check against: %v", err)
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil {
		t.Fatalf("ip_local_port_range %q: %v", b, err)
	}
	ports := freePorts(t, 50)
	seen := map[int]bool{}
	for _, p := range ports {
		if p >= first && p <= last {
			t.Errorf("port %d is in the ephemeral range [%d, %d]", p, first, last)
		}
		if seen[p] {
			t.Errorf("port %d given twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("port %d is not free: %v", p, err)
			continue
		}
		ln.Close()
	}
	t.Logf("50 ports outside [%d, %d], e.g. %v", first, last, ports[:5])
}
