package client

import (
	"errors"
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
)

// ClusterStatus is the coordinator's report, as printed by `status --json`.
type ClusterStatus struct {
	Epoch   uint64         `json:"epoch"`
	Servers []ServerStatus `json:"servers"`
	Shards  []ShardStatus  `json:"shards"`
}

// ShardStatus says who holds one shard; -1 means nobody.
type ShardStatus struct {
	Shard     int    `json:"shard"`
	Primary   int    `json:"primary"`
	Secondary int    `json:"secondary"`
	State     string `json:"state"` // serving / degraded (no copy) / unavailable (no live copy)
}

// ServerStatus describes one server in ClusterStatus.
type ServerStatus struct {
	ID            int    `json:"id"`
	Addr          string `json:"addr"`      // client address
	PeerAddr      string `json:"peer_addr"` // replication address
	CtlAddr       string `json:"ctl_addr"`  // coordinator control address
	Host          string `json:"host"`
	PID           int    `json:"pid"`
	Role          string `json:"role"`  // e.g. "primary(0) secondary(2)"
	State         string `json:"state"` // serving / degraded / re-seeding / unavailable / down / starting
	Epoch         uint64 `json:"epoch"` // the view epoch the server last reported
	Incarnation   uint64 `json:"incarnation"`
	PrimaryKeys   uint64 `json:"primary_keys"`
	SecondaryKeys uint64 `json:"secondary_keys"`
	PrimaryOf     []int  `json:"primary_of"`   // shards this server serves as primary
	SecondaryOf   []int  `json:"secondary_of"` // shards this server holds a copy of
	HeartbeatAge  string `json:"heartbeat_age"`
}
