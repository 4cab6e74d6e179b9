package client

import (
	"errors"

	"ftkv/status"
)

// Sentinel errors returned by the client. Wrapped errors carry detail; test
// with errors.Is.
var (
	// ErrNotFound: the key is absent (Get).
	ErrNotFound = errors.New("ftkv: key not found")
	// ErrTooLarge: a key or value is over the limit (key 64 KiB, value 1 MiB).
	ErrTooLarge = errors.New("ftkv: key or value too large")
	// ErrUnavailable: the shard has no live copy right now; the operation
	// was not applied. Returned only once ctx has ended while retrying.
	ErrUnavailable = errors.New("ftkv: shard unavailable")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("ftkv: client closed")
	// ErrSessionExpired: a write's outcome is unknown. It was first sent
	// (and may have been applied) but not answered, and retrying it
	// could no longer be made exactly-once: either it has been retried for
	// longer than the servers remember a client's writes (the session
	// TTL, less a margin), or the server answered SESSION_EXPIRED (it had
	// forgotten this client early and did not apply the retry). Read the
	// key to learn whether the write took effect.
	ErrSessionExpired = errors.New("ftkv: outcome unknown: the write's session may have expired")
)

// The status document types live in package status (a leaf the
// coordinator shares); these names keep existing callers compiling.
type (
	// ClusterStatus is the coordinator's report, as printed by `status --json`.
	ClusterStatus = status.Cluster
	// ServerStatus describes one server in ClusterStatus.
	ServerStatus = status.Server
	// ShardStatus says who holds one shard; -1 means nobody.
	ShardStatus = status.Shard
)
