package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// errorLines returns the log's lines at level (error, warn).
func errorLines(log, level string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"level":"`+level+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestCleanShutdownLogsNoErrors: an orderly stop (ctrl+d), of a cluster
// that served writes and of one whose coordinator was restarted and
// re-adopted its servers, writes no line at level error. An operator
// greps for those: a primary whose secondary exited first logged
// "replication link failed", and a coordinator that had re-adopted its
// servers logged "server process exited" for each as it stopped them.
func TestCleanShutdownLogsNoErrors(t *testing.T) {
	for _, readopt := range []bool{false, true} {
		t.Run(fmt.Sprintf("readopt=%v", readopt), func(t *testing.T) {
			c := testcluster.Start(t, testcluster.Options{N: 3})
			cl := c.Client()
			put := func(prefix string) {
				for i := range 300 {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := cl.Put(ctx, fmt.Sprintf("%s-%d", prefix, i), []byte("v"))
					cancel()
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			put("before")
			if readopt {
				c.KillCoord(t)
				c.RestartCoord(t)
				c.WaitRecovered(t, 20*time.Second)
				put("after")
			}
			if err := c.Shutdown(20 * time.Second); err != nil {
				t.Fatal(err)
			}
			if errs := errorLines(c.Log(), "error"); len(errs) > 0 {
				t.Fatalf("%d error lines in the log of a clean run and stop:\n%s", len(errs), strings.Join(errs, "\n"))
			}
			// A fresh start and stop has nothing to warn about either (a
			// single coordinator's Raft election at its start is no news).
			if warns := errorLines(c.Log(), "warn"); !readopt && len(warns) > 0 {
				t.Fatalf("%d warnings in the log of a fresh start, writes and stop:\n%s", len(warns), strings.Join(warns, "\n"))
			}
		})
	}
}
