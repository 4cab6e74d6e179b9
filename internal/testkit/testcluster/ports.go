package testcluster

import "testing"

// FreePorts returns n TCP ports free on 127.0.0.1 right now (for configs
// with fixed ports).
func FreePorts(t testing.TB, n int) []int { return freePorts(t, n) }
