package metrics

// help is the HELP text of every ftkv metric family, written on each
// scrape before the family's TYPE line. Every family a process exports
// has one (TestEveryFamilyHasHelp, and the end-to-end scrape checks).
var help = map[string]string{
	// The coordinator.
	"ftkv_coord_actions_total":         "Actions the decision core started, by kind (publish, push, kill, spawn, ask_seed, freeze).",
	"ftkv_coord_heartbeats_total":      "Server heartbeats received.",
	"ftkv_coord_leader":                "1 while this coordinator leads its group (a single coordinator: always), else 0.",
	"ftkv_coord_logins_total":          "Logins on the client port by outcome (ok, denied, throttled, unchecked, no_credentials).",
	"ftkv_coord_output_buffered_bytes": "Bytes of answers queued for clients of the coordinator, not yet written.",
	"ftkv_coord_raft_term":             "The coordinators' current Raft term.",
	"ftkv_coord_view_epoch":            "Epoch of the cluster view this coordinator holds.",
	"ftkv_coord_views_published_total": "Views committed and published, by reason (failover, re-seed, seeded, hand-back, start, takeover).",
	"ftkv_coord_server_keys":           "Keys each server reported in its last heartbeat, by server and role (primary, secondary).",
	"ftkv_coord_server_log_bytes":      "Size of each server's write-ahead log as its last heartbeat reported it.",
	"ftkv_coord_server_incarnation":    "Incarnation of each server in the view (grows with every respawn).",
	"ftkv_coord_servers":               "Servers by the state status shows (serving, degraded, re-seeding, starting, silent, down, unavailable).",
	"ftkv_coord_shards":                "Shards by state (serving, degraded: no second copy, starting: its primary is, unavailable).",
	// A server.
	"ftkv_server_client_connections":                    "Client connections open.",
	"ftkv_server_client_connections_limit_closed_total": "Client connections closed at a limit (output buffered, idle, hostile input).",
	"ftkv_server_client_connections_rejected_total":     "Client connections refused at max_clients.",
	"ftkv_server_dedup_records":                         "Remembered write outcomes of clients (exactly-once retries).",
	"ftkv_server_dedup_sessions":                        "Client sessions remembered for exactly-once retries.",
	"ftkv_server_logins_total":                          "Logins by outcome (ok, denied, throttled, unchecked, no_credentials).",
	"ftkv_server_op_duration_seconds":                   "Latency of client operations, from the request read to its answer queued.",
	"ftkv_server_ops_total":                             "Client operations by kind and outcome.",
	"ftkv_server_output_buffered_bytes":                 "Bytes of answers queued for clients, not yet written.",
	"ftkv_server_inflight_bytes":                        "Bytes of clients' writes read and not yet answered (inflight_budget bounds them).",
	"ftkv_server_reseed_pending_entries":                "Entries of the re-seeding under way not yet received.",
	"ftkv_server_reseed_progress_ratio":                 "Progress of the re-seeding under way, 0 to 1 (1: none under way).",
	"ftkv_server_reseed_received_entries_total":         "Entries received while being re-seeded.",
	"ftkv_server_reseed_sent_entries_total":             "Entries sent to re-seed a secondary.",
	"ftkv_server_reseeds_total":                         "Re-seedings this server ran as a primary, by outcome (ok, failed).",
	"ftkv_server_snapshot_bytes":                        "Size of the latest snapshot of the tables.",
	"ftkv_server_view_epoch":                            "Epoch of the view this server applied.",
	"ftkv_server_wal_bytes":                             "Size of the write-ahead log's segments.",
	"ftkv_server_wal_failed":                            "1 once a write or sync of the log failed (writes are refused), else 0.",
	"ftkv_server_wal_fsync_duration_seconds":            "Latency of the log's syncs (one per group-committed batch).",
	"ftkv_server_keys":                                  "Keys held, by shard and role (primary, secondary).",
	"ftkv_server_replication_lag_entries":               "Writes of a shard this primary sequenced and its secondary has not acknowledged.",
	"ftkv_server_inflight_writes":                       "Writes of a shard sent to its secondary and not yet committed.",
	"ftkv_server_log_index":                             "Log index of each copy this server holds, by shard and role.",
	"ftkv_server_replication_linked":                    "1 while this primary's replication link to the shard's secondary is up, else 0.",
	"ftkv_server_reseeding":                             "1 while this server's copy of the shard is being re-seeded, else 0.",
	// A gateway.
	"ftkv_gateway_command_duration_seconds": "Latency of RESP and HTTP commands, from read to answer.",
	"ftkv_gateway_commands_total":           "Commands by name and outcome.",
	"ftkv_gateway_connections":              "Client connections open.",
	"ftkv_gateway_logins_total":             "Logins by outcome (ok, denied, throttled, unchecked, no_credentials).",
	"ftkv_gateway_uptime_seconds":           "Seconds since the gateway started.",
}
