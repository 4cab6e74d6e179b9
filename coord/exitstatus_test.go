package coord

import (
	"testing"

	"ftkv/server"
)

// TestServerRefusedStatus: the coordinator reads a refused data directory
// from the status bin/server exits with for it.
func TestServerRefusedStatus(t *testing.T) {
	if serverRefused != server.ExitDataDirRefused {
		t.Fatalf("coord's serverRefused %d, bin/server exits %d", serverRefused, server.ExitDataDirRefused)
	}
	if got, want := refusedLine(2, 7, 4242), server.RefusedLine(2, 7, 4242); got != want {
		t.Fatalf("coord looks for %q in a remote server's log, bin/server writes %q", got, want)
	}
}
