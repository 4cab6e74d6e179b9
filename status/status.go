// Package status holds the cluster status document: what the coordinator
// answers to a STATUS request on its client port and what `client status
// --json` prints. It is a leaf (no ftkv import), shared by the coordinator
// that builds it and the client and tools that read it; the JSON field
// names are part of the contract scripts rely on.
package status

// Cluster is the coordinator's report.
type Cluster struct {
	Epoch   uint64   `json:"epoch"`
	Servers []Server `json:"servers"`
	Shards  []Shard  `json:"shards"`
	// The control plane: the Raft term of the coordinator that answered,
	// the leader's index among the coordinators (-1: none known), and
	// every coordinator of the group (one entry for a single one).
	// Answered by a follower, the servers' heartbeat fields (key counts,
	// heartbeat age, sessions) are empty: only the leader hears them;
	// the client's Status asks the leader when it can.
	Term         uint64        `json:"term"`
	Leader       int           `json:"leader"`
	Answered     int           `json:"answered_by"` // the index of the coordinator that answered
	Coordinators []Coordinator `json:"coordinators"`
	// Redacted: the cluster has users and the one asking is not an
	// admin: hosts, pids, incarnations, internal and metrics addresses
	// and resource figures are left empty (zero).
	Redacted bool `json:"redacted,omitempty"`
}

// Coordinator describes one member of the coordinators' Raft group.
type Coordinator struct {
	ID          int    `json:"id"`
	RaftAddr    string `json:"raft_addr"`
	ClientAddr  string `json:"client_addr"`
	ServersAddr string `json:"servers_addr"`
	// Role: leader, follower, unknown (the one that answered knows no
	// leader), or unreachable (the leader's heartbeats to it fail: dead,
	// stopped or cut off).
	Role string `json:"role"`
	// MetricsAddr is the coordinator's Prometheus endpoint (its
	// -metrics; GET /metrics and /sd), known only for the one that
	// answered ("" otherwise or when off).
	MetricsAddr string `json:"metrics_addr,omitempty"`
}

// Shard says who holds one shard; -1 means nobody.
type Shard struct {
	Shard     int    `json:"shard"`
	Primary   int    `json:"primary"`
	Secondary int    `json:"secondary"`
	State     string `json:"state"` // serving / degraded (no copy) / starting (its primary is) / unavailable (no live copy)
}

// Server describes one server of a Cluster.
type Server struct {
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
	// From the last heartbeat: the clients whose writes the server
	// remembers (for exactly-once retries), the write outcomes it holds
	// for them, and its resident memory (0: unknown).
	Sessions       uint64 `json:"sessions"`
	SessionRecords uint64 `json:"session_records"`
	RSSBytes       uint64 `json:"rss_bytes"`
	// The write-ahead log, from the last heartbeat: its fsync policy
	// ("" without a log), its size, the last snapshot's size and time
	// (RFC 3339; "" when none), and whether it failed (a full disk, an
	// I/O error: the server refuses writes until it is restarted).
	Fsync         string `json:"fsync"`
	LogBytes      uint64 `json:"log_bytes"`
	SnapshotBytes uint64 `json:"snapshot_bytes"`
	LastSnapshot  string `json:"last_snapshot"`
	DiskError     bool   `json:"disk_error"`
	// MetricsAddr is where the server serves Prometheus metrics
	// (GET /metrics; "" when it does not), from its heartbeat.
	MetricsAddr string `json:"metrics_addr"`
}

// Redact removes from c what only an admin user sees, and sets Redacted:
// where processes run (hosts, which may name ssh users, pids,
// incarnations), the internal ports (replication, control, the
// coordinators' servers and Raft ports), metrics endpoints and resource
// figures (memory, sessions, log and snapshot sizes, fsync policy). What
// a client needs to understand the service stays: ids, client addresses
// (the view has them), roles, states, epochs, key counts, shards and disk
// errors.
func (c *Cluster) Redact() {
	c.Redacted = true
	for i := range c.Servers {
		s := &c.Servers[i]
		s.PeerAddr, s.CtlAddr, s.Host, s.MetricsAddr = "", "", "", ""
		s.PID, s.Incarnation = 0, 0
		s.Sessions, s.SessionRecords, s.RSSBytes = 0, 0, 0
		s.Fsync, s.LogBytes, s.SnapshotBytes, s.LastSnapshot = "", 0, 0, ""
	}
	for i := range c.Coordinators {
		co := &c.Coordinators[i]
		co.RaftAddr, co.ServersAddr, co.MetricsAddr = "", "", ""
	}
}
