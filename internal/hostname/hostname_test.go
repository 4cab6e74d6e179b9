package hostname

import "testing"

func TestIsLocal(t *testing.T) {
	for h, want := range map[string]bool{"localhost": true, "LOCALHOST": true, "LocalHost": true, "127.0.0.1": true, "::1": true, "": false,
		"alice@10.0.0.7": false, "10.0.0.7": false, "ssh://bob@host:22": false, "localhost.example.com": false} {
		if got := IsLocal(h); got != want {
			t.Errorf("IsLocal(%q) = %v", h, got)
		}
	}
}
