package cli

import "testing"

// TestShutdownCommand: `shutdown` asks the cluster to stop (once), prints
// OK, and takes no arguments.
func TestShutdownCommand(t *testing.T) {
	h := &harness{store: newFake()}
	code, stdout, stderr := h.run(t, "", args("shutdown")...)
	if code != 0 || stdout != "OK\n" || stderr != "" || h.store.shutdowns != 1 {
		t.Fatalf("shutdown: exit %d, stdout %q, stderr %q, %d shutdowns; want 0, OK, one", code, stdout, stderr, h.store.shutdowns)
	}
	h = &harness{store: newFake()}
	code, _, stderr = h.run(t, "", args("shutdown", "now")...)
	if code != 2 || stderr != "error: shutdown takes no arguments, got 1\n" || h.store.shutdowns != 0 {
		t.Fatalf("shutdown now: exit %d, stderr %q, %d shutdowns; want 2 and a usage error", code, stderr, h.store.shutdowns)
	}
}
