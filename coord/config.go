package coord

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"ftkv/internal/auth"
	"ftkv/internal/hostname"
	"ftkv/internal/sched"
	"ftkv/limits"
)

// ServerSpec is one server line of the cluster file.
type ServerSpec struct {
	Line       int    // line number in the file (for messages)
	Host       string // "localhost" or an ssh destination
	ClientPort int    // 0 = any free port
	ServerPort int    // replication (peer) port; 0 = any
	CoordPort  int    // control port; 0 = any
}

// Local reports whether the server is spawned on this machine.
func (s ServerSpec) Local() bool { return hostname.IsLocal(s.Host) }

// Cluster is a parsed cluster file.
type Cluster struct {
	Path    string
	Servers []ServerSpec
	// Spares are hosts ("spare <host>" lines) a server moves to when
	// respawning it on its own host keeps failing.
	Spares []Spare
	// Remote holds the "<setting> <value>" lines for ssh hosts; the
	// coordinator's flags override them.
	Remote RemoteSettings
	// Limits holds the client-limit lines (max_clients, session_ttl, …);
	// the coordinator's flags override them.
	Limits limits.Config
	// Storage holds the data_dir, fsync, fsync_secondary and
	// snapshot_bytes lines; the coordinator's flags override them.
	Storage Storage
	// Coordinators are the "coordinator" lines: the members of a
	// coordinators' Raft group (none: one coordinator run with -c/-s).
	Coordinators []CoordSpec
	// Users are the "user <name> <role> <password-hash>" lines (nil: no
	// authentication; see coord/auth.go).
	Users *auth.Table
	// Sched is the "sched batch|normal" line: the servers' scheduling
	// policy ("" = the server's default, batch; see internal/sched).
	Sched string
	// TLS holds the tls_ca, tls_cert, tls_key, tls_coord_cert and
	// tls_coord_key lines (see coord/tls.go); the flags override them.
	TLS TLSFiles
	// GroupSecret is the group_secret_file line: the coordinators' Raft
	// connections prove it when there is no TLS (raftauth.go).
	GroupSecret string
	// Lines are the line numbers of the "<setting> <value>" lines, by
	// setting (the last one, if repeated).
	Lines map[string]int
	// UserLine is the line number of the first "user" line (0: none).
	UserLine int
}

// At is "path:line" of the last line among the named settings the file
// sets, or the path alone when it sets none of them: where an error about
// those settings points.
func (c *Cluster) At(names ...string) string {
	line := 0
	for _, n := range names {
		line = max(line, c.Lines[n])
	}
	if line == 0 {
		return c.Path
	}
	return fmt.Sprintf("%s:%d", c.Path, line)
}

// CoordSpec is one "coordinator <raft_host:port> <client_port>
// <servers_port>" line: a member of the coordinators' Raft group. Its
// client and servers ports listen on the Raft address's host.
type CoordSpec struct {
	Line        int
	RaftAddr    string // host:port of its Raft transport
	Host        string // the host part of RaftAddr
	ClientPort  int
	ServersPort int
}

// ClientAddr and ServersAddr are where the coordinator listens.
func (s CoordSpec) ClientAddr() string  { return net.JoinHostPort(s.Host, strconv.Itoa(s.ClientPort)) }
func (s CoordSpec) ServersAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.ServersPort)) }

// Spare is one "spare <host>" line.
type Spare struct {
	Line int
	Host string
}

// RemoteSettings say how servers on ssh hosts are started. Zero values
// mean the documented defaults.
type RemoteSettings struct {
	Identity       string // ssh_identity: private key file (ssh -i)
	KnownHosts     string // ssh_known_hosts: known-hosts file (UserKnownHostsFile)
	Binary         string // remote_bin: path of bin/server on the hosts
	Dir            string // remote_dir: working directory on the hosts
	CopyBinary     bool   // copy_bin yes: copy the local bin/server there first
	ConnectTimeout int    // ssh_connect_timeout: seconds (ssh ConnectTimeout)
}

// HasRemote reports whether any server or spare is on an ssh host.
func (c *Cluster) HasRemote() bool {
	for _, s := range c.Servers {
		if !s.Local() {
			return true
		}
	}
	for _, s := range c.Spares {
		if !hostname.IsLocal(s.Host) {
			return true
		}
	}
	return false
}

// LoadCluster reads and validates a cluster file.
func LoadCluster(path string) (*Cluster, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathErr(err))
	}
	defer f.Close()
	return ParseCluster(path, f)
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// ParseCluster parses the cluster file format:
//
//	N
//	<host> <client_port> <server_port> <coord_port>   (N lines)
//
// followed by any number of extension lines:
//
//	spare <host>                  a host to move a server to
//	ssh_identity <file>           and the other settings of RemoteSettings
//	max_clients <n>               and the other client limits (package limits)
//	data_dir <dir>                and the other settings of Storage
//	user <name> <role> <hash>     a client's credentials (read, readwrite or admin; bcrypt)
//	tls_ca <file>                 and tls_cert, tls_key, tls_coord_cert, tls_coord_key (coord/tls.go)
//
// A line whose first word names a setting is always read as that setting
// (a wrong number of values says what the setting takes). Blank lines and
// # comments are ignored. Every error names the file, the line and the
// problem.
func ParseCluster(path string, r io.Reader) (*Cluster, error) {
	c := &Cluster{Path: path}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := -1
	lineNo := 0
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", path, lineNo, fmt.Sprintf(format, args...))
	}
	seen := map[string]int{}
	var users []auth.User
	userLine := map[string]int{}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if lineNo == 1 {
			// A byte-order mark, as some Windows editors save it.
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if n < 0 {
			if len(fields) != 1 {
				return nil, bad("expected the number of servers, got %q", strings.TrimSpace(line))
			}
			v, err := strconv.Atoi(fields[0])
			if err != nil || v < 1 || v > 1024 {
				return nil, bad("number of servers must be an integer from 1 to 1024, got %q", fields[0])
			}
			n = v
			continue
		}
		if fields[0] == "coordinator" {
			cs, err := parseCoordLine(fields, lineNo, seen)
			if err != nil {
				return nil, bad("%v", err)
			}
			c.Coordinators = append(c.Coordinators, cs)
			continue
		}
		if fields[0] == "user" {
			u, err := auth.ParseUser(fields[1:])
			if err != nil {
				return nil, bad("%v", err)
			}
			if prev, dup := userLine[u.Name]; dup {
				return nil, bad("user %s is already defined on line %d", u.Name, prev)
			}
			userLine[u.Name] = lineNo
			if c.UserLine == 0 {
				c.UserLine = lineNo
			}
			users = append(users, u)
			continue
		}
		// A setting's name is never read as a host: a setting line with
		// a wrong number of values is that setting's error.
		if takes, ok := settingTakes(fields[0]); ok {
			if len(fields) != 2 {
				return nil, bad("%s needs one value (%s), %s", fields[0], takes, gotValues(fields[1:]))
			}
			// A setting given twice is a mistake the file's reader
			// cannot see (the second line won, silently).
			if prev, dup := c.Lines[fields[0]]; dup && fields[0] != "spare" {
				return nil, bad("%s is already set on line %d", fields[0], prev)
			}
			if err := c.setting(fields[0], fields[1], lineNo); err != nil {
				return nil, bad("%v", err)
			}
			if c.Lines == nil {
				c.Lines = map[string]int{}
			}
			c.Lines[fields[0]] = lineNo
			continue
		}
		if len(fields) == 2 || len(c.Servers) == n && len(fields) != 4 {
			return nil, bad("%v", errUnknownSetting(fields[0]))
		}
		if len(c.Servers) == n {
			return nil, bad("more server lines than the %d announced on the first line", n)
		}
		if len(fields) != 4 {
			return nil, bad("expected \"<host> <client_port> <server_port> <coord_port>\", got %d fields", len(fields))
		}
		spec := ServerSpec{Line: lineNo, Host: fields[0]}
		if err := validHost(spec.Host); err != nil {
			return nil, bad("%v", err)
		}
		ports := []*int{&spec.ClientPort, &spec.ServerPort, &spec.CoordPort}
		names := []string{"client_port", "server_port", "coord_port"}
		for i, p := range ports {
			v, err := strconv.Atoi(fields[i+1])
			if err != nil || v < 0 || v > 65535 {
				return nil, bad("%s must be a port number 0-65535, got %q", names[i], fields[i+1])
			}
			*p = v
			if v != 0 {
				k := hostKey(spec.Host) + ":" + fields[i+1]
				if prev, dup := seen[k]; dup {
					return nil, bad("%s", portReused(v, spec.Host, prev, lineNo))
				}
				seen[k] = lineNo
			}
		}
		c.Servers = append(c.Servers, spec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if n < 0 {
		return nil, fmt.Errorf("%s: empty file: expected the number of servers on the first line", path)
	}
	if len(users) > 0 {
		c.Users, _ = auth.NewTable(users) // names checked unique above
	}
	if len(c.Servers) < n {
		return nil, fmt.Errorf("%s:%d: %d server lines announced, only %d found", path, lineNo, n, len(c.Servers))
	}
	if k := len(c.Coordinators); k > 0 && k%2 == 0 || k > 7 {
		return nil, fmt.Errorf("%s:%d: %d coordinator lines: a Raft group needs an odd number (1, 3, 5 or 7; 3 or 5 survive failures)",
			path, c.Coordinators[k-1].Line, k)
	}
	return c, nil
}

// parseCoordLine reads "coordinator <raft_host:port> <client_port>
// <servers_port>"; seen holds the ports already used per host.
func parseCoordLine(fields []string, line int, seen map[string]int) (CoordSpec, error) {
	cs := CoordSpec{Line: line}
	if len(fields) != 4 {
		return cs, fmt.Errorf("expected \"coordinator <raft_host:port> <client_port> <servers_port>\", got %d fields", len(fields))
	}
	host, rp, err := net.SplitHostPort(fields[1])
	if err != nil || host == "" || strings.ContainsAny(host, "'\"`$;&|<>\\@/") {
		return cs, fmt.Errorf("coordinator Raft address %q: expected host:port", fields[1])
	}
	cs.RaftAddr, cs.Host = fields[1], host
	ports := []string{rp, fields[2], fields[3]}
	names := []string{"Raft port", "client_port", "servers_port"}
	vals := make([]int, 3)
	for i, p := range ports {
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 || v > 65535 {
			return cs, fmt.Errorf("coordinator %s must be a port number 1-65535 (a group's ports are fixed), got %q", names[i], p)
		}
		k := hostKey(host) + ":" + p
		if prev, dup := seen[k]; dup {
			return cs, errors.New(portReused(v, host, prev, line))
		}
		seen[k] = line
		vals[i] = v
	}
	cs.ClientPort, cs.ServersPort = vals[1], vals[2]
	return cs, nil
}

// setting applies one "<name> <value>" line.
func (c *Cluster) setting(name, val string, line int) error {
	r := &c.Remote
	if s, ok := limits.Lookup(name); ok {
		return s.Set(&c.Limits, val)
	}
	if ok, err := c.Storage.set(name, val); ok {
		if err == nil && strings.ContainsAny(val, "'\"`$;&|<>\\") {
			return fmt.Errorf("%s %q contains characters not allowed in a path", name, val)
		}
		return err
	}
	switch name {
	case "sched":
		if err := sched.Check(val); err != nil {
			return fmt.Errorf("sched %w", err)
		}
		c.Sched = val
	case "spare":
		if err := validHost(val); err != nil {
			return err
		}
		c.Spares = append(c.Spares, Spare{Line: line, Host: val})
	case "tls_ca", "tls_cert", "tls_key", "tls_coord_cert", "tls_coord_key":
		c.TLS.set(name, val)
	case "group_secret_file":
		c.GroupSecret = val
	case "ssh_identity":
		r.Identity = val
	case "ssh_known_hosts":
		r.KnownHosts = val
	case "remote_bin":
		r.Binary = val
	case "remote_dir":
		r.Dir = val
	case "copy_bin":
		switch val {
		case "yes", "true", "1":
			r.CopyBinary = true
		case "no", "false", "0":
			r.CopyBinary = false
		default:
			return fmt.Errorf("copy_bin must be yes or no, got %q", val)
		}
	case "ssh_connect_timeout":
		v, err := strconv.Atoi(val)
		if err != nil || v < 1 || v > 600 {
			return fmt.Errorf("ssh_connect_timeout must be a number of seconds from 1 to 600, got %q", val)
		}
		r.ConnectTimeout = v
	default:
		return errUnknownSetting(name)
	}
	if name != "spare" && name != "copy_bin" && name != "ssh_connect_timeout" && strings.ContainsAny(val, "'\"`$;&|<>\\") {
		return fmt.Errorf("%s %q contains characters not allowed in a path", name, val)
	}
	return nil
}

// OverrideLines replaces the spare lines with spares and the user lines
// with users (each "<name> <role> <hash>"), when given (-spare and -user:
// the flag wins over the file).
func (c *Cluster) OverrideLines(spares, users []string) error {
	if spares != nil {
		c.Spares = nil
		for _, h := range spares {
			if err := validHost(h); err != nil {
				return fmt.Errorf("-spare %q: %w", h, err)
			}
			c.Spares = append(c.Spares, Spare{Host: h})
		}
	}
	if users != nil {
		var us []auth.User
		for _, line := range users {
			u, err := auth.ParseUser(strings.Fields(line))
			if err != nil {
				return fmt.Errorf("-user: %w", err)
			}
			us = append(us, u)
		}
		t, err := auth.NewTable(us)
		if err != nil {
			return fmt.Errorf("-user: %w", err)
		}
		c.Users, c.UserLine = t, 0
	}
	return nil
}

func errUnknownSetting(name string) error {
	return fmt.Errorf("unknown setting %q (expected spare, ssh_identity, ssh_known_hosts, remote_bin, remote_dir, copy_bin, ssh_connect_timeout, data_dir, fsync, fsync_secondary, snapshot_bytes, sched, tls_ca, tls_cert, tls_key, tls_coord_cert, tls_coord_key, group_secret_file, a limit such as max_clients, user <name> <role> <hash> or coordinator <raft_host:port> <client_port> <servers_port>; a server line has 4 fields)", name)
}

// oneValueSettings says what each "<name> <value>" line takes besides
// the client limits (see settingTakes).
var oneValueSettings = map[string]string{
	"spare":               "a host: localhost or an ssh destination such as user@host",
	"ssh_identity":        "a private key file for ssh",
	"ssh_known_hosts":     "a known-hosts file for ssh",
	"remote_bin":          "the path of bin/server on the ssh hosts",
	"remote_dir":          "the servers' working directory on the ssh hosts",
	"copy_bin":            "yes or no",
	"ssh_connect_timeout": "seconds from 1 to 600",
	"data_dir":            "a directory, or " + NoDataDir + " for no log",
	"fsync":               "always, everysec or no",
	"fsync_secondary":     "yes or no",
	"snapshot_bytes":      "a number of bytes; negative: never",
	"sched":               "batch or normal",
	"tls_ca":              "the cluster CA's certificate file",
	"tls_cert":            "the servers' certificate file",
	"tls_key":             "the servers' key file",
	"tls_coord_cert":      "the coordinators' certificate file",
	"tls_coord_key":       "the coordinators' key file",
	"group_secret_file":   "a file of at least 16 secret bytes, the same for every coordinator of the group",
}

// settingTakes reports whether name is a one-value setting and what its
// value is, for the message when a line has none or several.
func settingTakes(name string) (string, bool) {
	if t, ok := oneValueSettings[name]; ok {
		return t, true
	}
	s, ok := limits.Lookup(name)
	if !ok {
		return "", false
	}
	// The limits package knows each limit's kind; ask it with samples.
	var scratch limits.Config
	what := "a whole number"
	switch {
	case s.Set(&scratch, "500ms") == nil:
		what = "a duration such as 10s or 500ms"
	case s.Set(&scratch, "4MiB") == nil:
		what = "a byte count such as 4194304, 4mb or 4MiB"
	}
	return what + "; default " + s.Default(), true
}

// gotValues says what a setting line held instead of one value.
func gotValues(vals []string) string {
	if len(vals) == 0 {
		return "got none"
	}
	return fmt.Sprintf("got %d: %q", len(vals), strings.Join(vals, " "))
}

// hostKey names the machine a host or ssh destination is on, so that
// ports are compared per machine: localhost and 127.0.0.1 are one, and
// so are alice@h, bob@h and ssh://alice@h:22; ssh://alice@h:2222 is
// another (ssh ports of one address usually lead to different machines
// or containers behind port forwarding).
func hostKey(h string) string {
	if hostname.IsLocal(h) {
		return "localhost"
	}
	if _, port, host, err := ParseDestination(h); err == nil {
		if port != "" && port != "22" {
			return host + "#ssh" + port
		}
		return host
	}
	return h
}

// FlagPort is a port the coordinator listens on, as its flag set it.
type FlagPort struct {
	Port    int
	Default bool // the flag was not given: Port is its default
}

func (f FlagPort) name(flag string) string {
	if f.Default {
		return fmt.Sprintf("%s (not given: default %d)", flag, f.Port)
	}
	return flag
}

// CheckPorts reports a port the coordinator would listen on that is
// already taken by the cluster itself: -c (client) equal to -s (servers),
// or either equal to a port of a server line on this machine. Zero (any
// free port) never conflicts. In a group the coordinator lines fix the
// ports (-c and -s are unused) and ParseCluster has checked them against
// the server lines. A port held by another process is found only when
// binding.
func (c *Cluster) CheckPorts(client, servers FlagPort) error {
	if len(c.Coordinators) > 0 {
		return nil
	}
	if client.Port != 0 && client.Port == servers.Port {
		return fmt.Errorf("%s and %s are both %d: each port needs its own number", client.name("-c"), servers.name("-s"), client.Port)
	}
	flags := []struct {
		name, what string
		port       int
	}{{client.name("-c"), "the coordinator's client port", client.Port}, {servers.name("-s"), "the coordinator's servers port", servers.Port}}
	for _, s := range c.Servers {
		if !s.Local() {
			continue
		}
		ports := []struct {
			name string
			port int
		}{{"client_port", s.ClientPort}, {"server_port", s.ServerPort}, {"coord_port", s.CoordPort}}
		for _, p := range ports {
			for _, f := range flags {
				if p.port != 0 && p.port == f.port {
					return fmt.Errorf("%s:%d: %s %d on %s is also %s, %s: each port needs its own number",
						c.Path, s.Line, p.name, p.port, s.Host, f.name, f.what)
				}
			}
		}
	}
	return nil
}

func validHost(h string) error {
	if h == "" {
		return fmt.Errorf("empty host")
	}
	if strings.ContainsAny(h, "'\"`$;&|<>\\") {
		return fmt.Errorf("host %q contains characters not allowed in a host or ssh destination", h)
	}
	if strings.HasPrefix(h, "-") {
		return fmt.Errorf("host %q must not start with '-'", h)
	}
	if hostname.IsLocal(h) {
		return nil
	}
	if _, _, _, err := ParseDestination(h); err != nil {
		return err
	}
	return nil
}

// ParseDestination splits an ssh destination ("host", "user@host" or
// "ssh://user@host:port") into what ssh takes as its destination, the port
// ("" = ssh's default) and the bare host (the address the server
// advertises to clients and peers).
func ParseDestination(d string) (dest, port, host string, err error) {
	dest = d
	if rest, ok := strings.CutPrefix(d, "ssh://"); ok {
		dest = rest
		at := strings.LastIndexByte(rest, '@')
		hp := rest[at+1:]
		if h, p, perr := net.SplitHostPort(hp); perr == nil {
			n, aerr := strconv.Atoi(p)
			if aerr != nil || n < 1 || n > 65535 {
				return "", "", "", fmt.Errorf("ssh destination %q: bad port %q", d, p)
			}
			dest, port = rest[:at+1]+h, p
		} else if strings.Contains(hp, ":") && !strings.HasPrefix(hp, "[") {
			return "", "", "", fmt.Errorf("ssh destination %q: bad host:port", d)
		}
	}
	host = dest[strings.LastIndexByte(dest, '@')+1:]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.ContainsAny(host, "/@ ") || strings.HasPrefix(host, "-") {
		return "", "", "", fmt.Errorf("ssh destination %q: missing or bad host", d)
	}
	if at := strings.LastIndexByte(dest, '@'); at == 0 {
		return "", "", "", fmt.Errorf("ssh destination %q: empty user", d)
	}
	return dest, port, host, nil
}

// portReused says that port on host, met on line, was already used on
// line prev (the same line: given twice on it).
func portReused(port int, host string, prev, line int) string {
	if prev == line {
		return fmt.Sprintf("port %d on %s is given twice on this line", port, host)
	}
	return fmt.Sprintf("port %d on %s is already used on line %d", port, host, prev)
}
