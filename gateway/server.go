package gateway

import (
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"ftkv/internal/auth"
	"ftkv/status"
)

// redisVersion is the Redis version the gateway answers as (HELLO, INFO):
// the commands it serves behave as Redis 7.0's.
const redisVersion = "7.0.0"

func cmdHello(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	proto := s.proto
	if len(args) >= 2 {
		v, ok := parseInt(args[1])
		switch {
		case !ok:
			return out, Error("ERR Protocol version is not an integer or out of range")
		case v < 2 || v > 3:
			return out, errNoProto
		}
		proto = int(v)
	}
	name, setName := "", false
	var user, pw []byte
	for i := 2; i < len(args); i++ {
		switch {
		case isCmd(args[i], "auth") && i+2 < len(args):
			user, pw = args[i+1], args[i+2]
			i += 2
		case isCmd(args[i], "setname") && i+1 < len(args):
			name, setName = string(args[i+1]), true
			if strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r > '~' }) {
				return out, errClientName
			}
			i++
		default:
			return out, Error("ERR Syntax error in HELLO option '" + cut(args[i], 128) + "'")
		}
	}
	if user != nil {
		if err := s.authenticate(ctx, string(user), string(pw)); err != nil {
			return out, err
		}
	} else if s.g.logins != nil && s.role() == auth.RoleNone {
		return out, errHelloNoAuth
	}
	s.proto = proto
	if setName {
		s.name = name
	}
	out = appendMap(out, 7, proto)
	out = redcon.AppendBulkString(out, "server")
	out = redcon.AppendBulkString(out, "redis")
	out = redcon.AppendBulkString(out, "version")
	out = redcon.AppendBulkString(out, redisVersion)
	out = redcon.AppendBulkString(out, "proto")
	out = redcon.AppendInt(out, int64(proto))
	out = redcon.AppendBulkString(out, "id")
	out = redcon.AppendInt(out, s.id)
	out = redcon.AppendBulkString(out, "mode")
	out = redcon.AppendBulkString(out, "standalone")
	out = redcon.AppendBulkString(out, "role")
	out = redcon.AppendBulkString(out, "master")
	out = redcon.AppendBulkString(out, "modules")
	return redcon.AppendArray(out, 0), nil
}

func cmdDBSize(ctx context.Context, s *session, _ [][]byte, out []byte) ([]byte, error) {
	st, err := s.g.cfg.Store.Status(ctx)
	if err != nil {
		return out, err
	}
	return redcon.AppendInt(out, int64(keyCount(st))), nil
}

// keyCount is the number of keys in the cluster: each key is counted by
// the primary of its shard (the servers report their counts with their
// heartbeats, so it trails writes by up to one heartbeat).
func keyCount(st *status.Cluster) uint64 {
	var n uint64
	for _, sv := range st.Servers {
		n += sv.PrimaryKeys
	}
	return n
}

// infoSections are INFO's sections in order; keyspace and ftkv need the
// cluster's status.
var infoSections = []string{"server", "clients", "memory", "stats", "replication", "cluster", "ftkv", "keyspace"}

func cmdInfo(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var st *status.Cluster
	var stErr error
	if all || want["keyspace"] || want["ftkv"] {
		st, stErr = s.g.cfg.Store.Status(ctx)
		st = s.g.statusFor(st, s.role())
	}
	var b strings.Builder
	for _, sec := range infoSections {
		if !all && !want[sec] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		s.g.infoSection(&b, sec, st, stErr, s.g.logins == nil || s.role().IsAdmin())
	}
	return appendVerbatim(out, b.String(), s.proto), nil
}

// infoSection writes one section of INFO; full: for an admin (or without
// logins), who also sees where processes run, as in the cluster's status.
func (g *Gateway) infoSection(b *strings.Builder, sec string, st *status.Cluster, stErr error, full bool) {
	line := func(k string, v any) { fmt.Fprintf(b, "%s:%v\r\n", k, v) }
	switch sec {
	case "server":
		b.WriteString("# Server\r\n")
		line("redis_version", redisVersion)
		line("ftkv_gateway", "1")
		line("redis_mode", "standalone")
		line("os", runtime.GOOS)
		line("arch_bits", strconv.IntSize)
		if full {
			line("process_id", os.Getpid())
		}
		line("tcp_port", g.port.Load().Addr().(*net.TCPAddr).Port)
		up := time.Since(g.started)
		line("uptime_in_seconds", int64(up.Seconds()))
		line("uptime_in_days", int64(up.Hours()/24))
	case "clients":
		b.WriteString("# Clients\r\n")
		line("connected_clients", g.clients.Load())
		line("maxclients", g.lim.MaxClients)
		line("blocked_clients", 0)
	case "memory":
		// The gateway's own heap (the cluster's memory is the servers':
		// their metrics). redis-cli --stat reads used_memory.
		b.WriteString("# Memory\r\n")
		m := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(m)
		var used uint64
		if m[0].Value.Kind() == metrics.KindUint64 {
			used = m[0].Value.Uint64()
		}
		line("used_memory", used)
		line("used_memory_human", fmt.Sprintf("%.2fM", float64(used)/(1<<20)))
	case "stats":
		b.WriteString("# Stats\r\n")
		line("total_connections_received", g.nextID.Load())
		line("total_commands_processed", g.commands.Load())
		line("rejected_connections", g.port.Load().Rejected())
	case "replication":
		// Every key has a primary and a secondary copy in the cluster;
		// the gateway itself is a front door, the "master" of nothing.
		b.WriteString("# Replication\r\n")
		line("role", "master")
		line("connected_slaves", 0)
	case "cluster":
		b.WriteString("# Cluster\r\n")
		line("cluster_enabled", 0) // any key through any gateway: clients need no cluster mode
	case "ftkv":
		b.WriteString("# ftkv\r\n")
		if stErr != nil {
			line("status_error", oneLine(stErr.Error()))
			return
		}
		line("epoch", st.Epoch)
		line("term", st.Term)
		line("leader", st.Leader)
		line("servers", len(st.Servers))
		serving := 0
		for _, sh := range st.Shards {
			if sh.State == "serving" {
				serving++
			}
		}
		line("shards", len(st.Shards))
		line("shards_serving", serving)
		for _, sv := range st.Servers {
			line(fmt.Sprintf("server%d", sv.ID), fmt.Sprintf("addr=%s,host=%s,pid=%d,state=%s,primary_keys=%d,secondary_keys=%d",
				sv.Addr, sv.Host, sv.PID, sv.State, sv.PrimaryKeys, sv.SecondaryKeys))
		}
		for _, sh := range st.Shards {
			line(fmt.Sprintf("shard%d", sh.Shard), fmt.Sprintf("primary=%d,secondary=%d,state=%s", sh.Primary, sh.Secondary, sh.State))
		}
	case "keyspace":
		b.WriteString("# Keyspace\r\n")
		if stErr == nil {
			if n := keyCount(st); n > 0 {
				line("db0", fmt.Sprintf("keys=%d,expires=0,avg_ttl=0", n))
			}
		}
	}
}

// configParams answers CONFIG GET: the settings Redis clients and tools
// ask about, as the gateway and the cluster behave.
func (g *Gateway) configParams(ctx context.Context) [][2]string {
	aof, fsync := "no", "no"
	if st, err := g.cfg.Store.Status(ctx); err == nil {
		for _, sv := range st.Servers {
			if sv.Fsync != "" {
				aof, fsync = "yes", sv.Fsync
				break
			}
		}
	}
	port := strconv.Itoa(g.port.Load().Addr().(*net.TCPAddr).Port)
	host, _, _ := net.SplitHostPort(g.port.Load().Addr().String())
	return [][2]string{
		{"save", ""}, // no snapshots on a schedule: the servers log every write
		{"appendonly", aof},
		{"appendfsync", fsync},
		{"databases", "1"},
		{"maxclients", strconv.Itoa(g.lim.MaxClients)},
		{"maxmemory", "0"},
		{"maxmemory-policy", "noeviction"},
		{"timeout", strconv.Itoa(int(g.lim.IdleTimeout.Seconds()))},
		{"proto-max-bulk-len", strconv.Itoa(maxValue)},
		{"port", port},
		{"bind", host},
		{"cluster-enabled", "no"},
	}
}

func cmdConfig(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	switch {
	case isCmd(args[1], "get"):
	case isCmd(args[1], "set"), isCmd(args[1], "resetstat"), isCmd(args[1], "rewrite"):
		return out, Error("ERR CONFIG " + strings.ToUpper(string(args[1])) + " is not supported by the ftkv gateway")
	case isCmd(args[1], "help") && len(args) == 2:
		return appendHelp(out, "CONFIG", []string{
			"GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
		}), nil
	default:
		return out, unknownSubcommand("config", args[1])
	}
	if len(args) < 3 {
		return out, Error("ERR wrong number of arguments for 'config|get' command")
	}
	params := s.g.configParams(ctx)
	var pairs [][2]string
	seen := map[string]bool{}
	for _, a := range args[2:] {
		pat := strings.ToLower(string(a))
		matched := false
		for _, p := range params {
			if ok, _ := path.Match(pat, p[0]); ok {
				matched = true
				if !seen[p[0]] {
					seen[p[0]] = true
					pairs = append(pairs, p)
				}
			}
		}
		if !matched && !strings.ContainsAny(pat, "*?[") && !seen[pat] {
			// Anything else asked is answered, empty: the gateway
			// has no such setting.
			seen[pat] = true
			pairs = append(pairs, [2]string{pat, ""})
		}
	}
	out = appendMap(out, len(pairs), s.proto)
	for _, p := range pairs {
		out = redcon.AppendBulkString(out, p[0])
		out = redcon.AppendBulkString(out, p[1])
	}
	return out, nil
}

func cmdCommand(_ context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	if len(args) == 1 {
		out = redcon.AppendArray(out, len(specs))
		for _, sp := range specs {
			out = sp.appendInfo(out)
		}
		return out, nil
	}
	sub := args[1]
	switch {
	case isCmd(sub, "count"):
		if len(args) != 2 {
			return out, wrongArity("command|count")
		}
		return redcon.AppendInt(out, int64(len(specs))), nil
	case isCmd(sub, "list") && len(args) == 2:
		out = redcon.AppendArray(out, len(specs))
		for _, sp := range specs {
			out = redcon.AppendBulkString(out, sp.name)
		}
		return out, nil
	case isCmd(sub, "info"):
		out = redcon.AppendArray(out, len(args)-2)
		for _, a := range args[2:] {
			if sp, _ := lookup(a); sp != nil {
				out = sp.appendInfo(out)
			} else {
				out = appendNull(out, s.proto)
			}
		}
		return out, nil
	case isCmd(sub, "docs"):
		var list []*spec
		if len(args) == 2 {
			list = specs
		}
		for _, a := range args[2:] {
			if sp, _ := lookup(a); sp != nil {
				list = append(list, sp)
			}
		}
		out = appendMap(out, len(list), s.proto)
		for _, sp := range list {
			out = redcon.AppendBulkString(out, sp.name)
			out = appendMap(out, 4, s.proto)
			out = redcon.AppendBulkString(out, "summary")
			out = redcon.AppendBulkString(out, sp.summary)
			out = redcon.AppendBulkString(out, "since")
			out = redcon.AppendBulkString(out, "1.0.0")
			out = redcon.AppendBulkString(out, "group")
			out = redcon.AppendBulkString(out, sp.group)
			out = redcon.AppendBulkString(out, "complexity")
			out = redcon.AppendBulkString(out, "O(1) per key")
		}
		return out, nil
	}
	if isCmd(sub, "help") && len(args) == 2 {
		return appendHelp(out, "COMMAND", []string{
			"(no subcommand)", "    Return details about all commands.",
			"COUNT", "    Return the total number of commands.",
			"DOCS [<command-name> ...]", "    Return documentary information about commands.",
			"INFO [<command-name> ...]", "    Return details about the given commands, or all of them.",
			"LIST", "    Return a list of all commands.",
		}), nil
	}
	return out, unknownSubcommand("command", sub)
}

// appendInfo writes the command's COMMAND INFO entry as Redis 7 does: name,
// arity, flags, first key, last key, step, ACL categories, tips, key
// specifications, subcommands.
func (sp *spec) appendInfo(out []byte) []byte {
	out = redcon.AppendArray(out, 10)
	out = redcon.AppendBulkString(out, sp.name)
	out = redcon.AppendInt(out, int64(sp.arity))
	out = redcon.AppendArray(out, len(sp.flags))
	for _, f := range sp.flags {
		out = redcon.AppendString(out, f)
	}
	out = redcon.AppendInt(out, int64(sp.first))
	out = redcon.AppendInt(out, int64(sp.last))
	out = redcon.AppendInt(out, int64(sp.step))
	out = redcon.AppendArray(out, 1)
	out = redcon.AppendString(out, "@"+sp.group)
	out = redcon.AppendArray(out, 0)
	out = redcon.AppendArray(out, 0)
	return redcon.AppendArray(out, 0)
}
