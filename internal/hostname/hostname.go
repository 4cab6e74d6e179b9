// Package hostname says which host names mean this machine: the one rule
// the coordinator spawns by (a local process, or one over ssh) and the
// load generator kills by (it only ever signals local servers).
package hostname

import "strings"

// IsLocal reports whether h, a host of the cluster file or of the status,
// means this machine (host names are case-insensitive: LOCALHOST is
// localhost, never an ssh destination).
func IsLocal(h string) bool {
	return strings.EqualFold(h, "localhost") || h == "127.0.0.1" || h == "::1"
}
