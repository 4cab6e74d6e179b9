package testcluster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Events returns the last n lines of the cluster's logs that tell what
// happened — every coordinator's and server's line but Raft's own and
// the routine ones — one
// compact line each, in time order, a group's tagged with the
// coordinator whose log holds it. A failed test prints them ahead of the
// status: CI shows only the head and the tail of a failure's output, and
// a log's tail after a leader change is mostly Raft's complaints.
func (c *Cluster) Events(n int) string {
	type event struct {
		at   time.Time
		line string
	}
	var evs []event
	read := func(path, tag string) {
		raw, err := os.ReadFile(path)
		if err != nil {
			return
		}
		for _, l := range strings.Split(string(raw), "\n") {
			var m map[string]any
			d := json.NewDecoder(strings.NewReader(l))
			d.UseNumber() // (epochs print whole)
			if d.Decode(&m) != nil || m["component"] == "raft" || routine[fmt.Sprint(m["message"])] {
				continue
			}
			at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"]))
			var b strings.Builder
			fmt.Fprintf(&b, "%s %s%-5s %v", at.Format("15:04:05.000"), tag, m["level"], m["message"])
			keys := make([]string, 0, len(m))
			for k := range m {
				switch k {
				case "time", "level", "message", "role":
				default:
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, " %s=%v", k, m[k])
			}
			evs = append(evs, event{at, b.String()})
		}
	}
	if c.group != nil {
		for k := range c.group {
			read(c.groupLog(k), fmt.Sprintf("c%d ", k))
		}
	} else {
		read(filepath.Join(c.Dir, "ftkv.log"), "")
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	if len(evs) > n {
		evs = evs[len(evs)-n:]
	}
	lines := make([]string, len(evs))
	for i, e := range evs {
		lines[i] = e.line
	}
	return strings.Join(lines, "\n")
}

// routine are the log messages Events leaves out: every member logs them
// for every view.
var routine = map[string]bool{"view applied": true, "descriptor limit": true}
