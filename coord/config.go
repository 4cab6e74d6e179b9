package coord

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
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
func (s ServerSpec) Local() bool {
	return s.Host == "localhost" || s.Host == "127.0.0.1" || s.Host == "::1"
}

// Cluster is a parsed cluster file.
type Cluster struct {
	Path    string
	Servers []ServerSpec
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
// Blank lines and # comments are ignored. Every error names the file, the
// line and the problem.
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
	for sc.Scan() {
		lineNo++
		line := sc.Text()
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
				k := spec.Host + ":" + fields[i+1]
				if spec.Local() {
					k = "localhost:" + fields[i+1]
				}
				if prev, dup := seen[k]; dup {
					return nil, bad("port %d on %s is already used on line %d", v, spec.Host, prev)
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
	if len(c.Servers) < n {
		return nil, fmt.Errorf("%s:%d: %d server lines announced, only %d found", path, lineNo, n, len(c.Servers))
	}
	return c, nil
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
	return nil
}
