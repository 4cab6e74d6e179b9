//go:build race

package gateway

// raceEnabled: the race detector slows the gateway's parsing about
// tenfold (TestLongCommandReadOnce).
const raceEnabled = true
