package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
	"ftkv/wire"
)

// TestAppendOverValueLimit: an Append whose result would pass the value
// limit (1 MiB) is refused with ErrTooLarge and changes nothing — the
// value stays as it was, its shard keeps taking writes, and the CLI says
// so in one line (exit 2). Before, the value grew past the
// limit until its replication frames passed the secondary's frame limit:
// the link failed and reconnected forever and the shard stopped taking
// writes with every server "serving" (found by a black-box test).
func TestAppendOverValueLimit(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key := "grow"
	chunk := bytes.Repeat([]byte("a"), wire.MaxValue)
	must(t, cl.Put(ctx, key, chunk[:wire.MaxValue-10]))
	must(t, cl.Append(ctx, key, chunk[:10])) // exactly at the limit: allowed
	err := cl.Append(ctx, key, []byte("x"))
	if !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("Append past the limit: %v, want ErrTooLarge", err)
	}
	t.Logf("refused: %v", err)
	for range 3 {
		if err := cl.Append(ctx, key, chunk); !errors.Is(err, client.ErrTooLarge) {
			t.Fatalf("Append of 1 MiB to a 1 MiB value: %v, want ErrTooLarge", err)
		}
	}
	v, err := cl.Get(ctx, key)
	if err != nil || len(v) != wire.MaxValue {
		t.Fatalf("after the refusals %s has %d bytes (%v), want %d", key, len(v), err, wire.MaxValue)
	}
	// Its shard still takes writes, from the same and from new keys.
	shardKeys := keysOnShards(3, 1, "grow-shard")
	for _, k := range shardKeys {
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		err := cl.Put(wctx, k, []byte("ok"))
		wcancel()
		if err != nil {
			t.Fatalf("Put %s after the refused appends: %v", k, err)
		}
	}
	must(t, cl.Put(ctx, key, []byte("small")))
	must(t, cl.Append(ctx, key, []byte("+")))
	if v, err := cl.Get(ctx, key); err != nil || string(v) != "small+" {
		t.Fatalf("%s = %q, %v; want small+", key, v, err)
	}

	// The CLI: one line, exit 2 (too large), the value unchanged.
	big := filepath.Join(t.TempDir(), "big.txt")
	must(t, os.WriteFile(big, []byte(fmt.Sprintf("P cli-grow %q\nA cli-grow \"b\"\n", strings.Repeat("a", wire.MaxValue))), 0o644))
	r := runCLI(t, c.Bin, c.Addr, "", "-f", big)
	if r.code != 2 || !strings.Contains(r.stderr, "too large") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Errorf("bin/client A past the limit: exit %d, stderr %q; want exit 2 and one line saying too large", r.code, r.stderr)
	}
	if v, err := cl.Get(ctx, "cli-grow"); err != nil || len(v) != wire.MaxValue {
		t.Errorf("cli-grow has %d bytes, %v", len(v), err)
	}
}
