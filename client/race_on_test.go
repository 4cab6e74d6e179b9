//go:build race

package client_test

// raceEnabled: under the race detector sync.Pool drops a random share of
// what is put back, so allocation counts are not the program's.
const raceEnabled = true
