package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"ftkv/status"
)

// writeStatusJSON prints st as one JSON object on one line. Field names are
// those of status.Cluster, which scripts rely on.
func writeStatusJSON(w io.Writer, st *status.Cluster) error {
	if st == nil {
		return errors.New("coordinator sent no status")
	}
	out := *st
	if out.Servers == nil {
		out.Servers = []status.Server{} // "servers": [] rather than null
	}
	if out.Shards == nil {
		out.Shards = []status.Shard{}
	}
	if out.Coordinators == nil {
		out.Coordinators = []status.Coordinator{}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeStatusTable prints one aligned row per server, by id, then the
// epoch; for a group of coordinators then the control plane: the term, the
// leader and who answered, and one row per coordinator.
func writeStatusTable(w io.Writer, st *status.Cluster) error {
	if st == nil {
		return errors.New("coordinator sent no status")
	}
	servers := slices.Clone(st.Servers)
	slices.SortStableFunc(servers, func(a, b status.Server) int { return a.ID - b.ID })

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDR\tHOST\tPID\tROLE\tSTATE\tEPOCH\tINC\tPRIMARY\tSECONDARY\tFSYNC\tLOG")
	for _, s := range servers {
		pid := "-"
		if s.PID > 0 {
			pid = strconv.Itoa(s.PID)
		}
		fsync, logSize := cell(s.Fsync), "-"
		if s.Fsync != "" {
			logSize = humanBytes(s.LogBytes)
		}
		if s.DiskError {
			fsync = "disk-error"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n",
			s.ID, cell(s.Addr), cell(s.Host), pid, cell(s.Role), cell(s.State),
			s.Epoch, s.Incarnation, s.PrimaryKeys, s.SecondaryKeys, fsync, logSize)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "epoch %d\n", st.Epoch); err != nil {
		return err
	}
	if st.Redacted {
		// Hosts, pids, incarnations and log figures are an admin's.
		if _, err := fmt.Fprintln(w, "(details for admin users only)"); err != nil {
			return err
		}
	}
	return writeControlPlane(w, st)
}

// writeControlPlane prints the coordinators of a group (nothing for a
// single coordinator, whose table stays as it always was).
func writeControlPlane(w io.Writer, st *status.Cluster) error {
	if len(st.Coordinators) < 2 {
		return nil
	}
	leader := "unknown"
	if st.Leader >= 0 {
		leader = strconv.Itoa(st.Leader)
	}
	answered := strconv.Itoa(st.Answered)
	if st.Answered != st.Leader {
		answered += " (a follower: no heartbeat figures)"
	}
	fmt.Fprintf(w, "term %d, leader %s, answered by %s\n", st.Term, leader, answered)
	coords := slices.Clone(st.Coordinators)
	slices.SortStableFunc(coords, func(a, b status.Coordinator) int { return a.ID - b.ID })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COORD\tCLIENT\tSERVERS\tRAFT\tROLE")
	for _, co := range coords {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", co.ID, cell(co.ClientAddr), cell(co.ServersAddr), cell(co.RaftAddr), cell(co.Role))
	}
	return tw.Flush()
}

// cell makes a string safe for one table cell: "-" when empty, no control
// characters that would break the alignment or the line.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// humanBytes prints n as B, KiB, MiB or GiB with one decimal.
func humanBytes(n uint64) string {
	const k = 1024
	switch {
	case n < k:
		return strconv.FormatUint(n, 10) + "B"
	case n < k*k:
		return strconv.FormatFloat(float64(n)/k, 'f', 1, 64) + "KiB"
	case n < k*k*k:
		return strconv.FormatFloat(float64(n)/(k*k), 'f', 1, 64) + "MiB"
	}
	return strconv.FormatFloat(float64(n)/(k*k*k), 'f', 1, 64) + "GiB"
}
