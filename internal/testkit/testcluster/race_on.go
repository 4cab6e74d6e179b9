//go:build race

package testcluster

// raceEnabled: the test binary runs with -race, so the cluster's binaries
// are built with it too and data races in servers fail the tests.
const raceEnabled = true
