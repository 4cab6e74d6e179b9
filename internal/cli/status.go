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
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeStatusTable prints one aligned row per server, by id, then the epoch.
func writeStatusTable(w io.Writer, st *status.Cluster) error {
	if st == nil {
		return errors.New("coordinator sent no status")
	}
	servers := slices.Clone(st.Servers)
	slices.SortStableFunc(servers, func(a, b status.Server) int { return a.ID - b.ID })

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDR\tHOST\tPID\tROLE\tSTATE\tEPOCH\tINC\tPRIMARY\tSECONDARY")
	for _, s := range servers {
		pid := "-"
		if s.PID > 0 {
			pid = strconv.Itoa(s.PID)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n",
			s.ID, cell(s.Addr), cell(s.Host), pid, cell(s.Role), cell(s.State),
			s.Epoch, s.Incarnation, s.PrimaryKeys, s.SecondaryKeys)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "epoch %d\n", st.Epoch)
	return err
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
