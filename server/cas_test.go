package server

import (
	"bytes"
	"testing"
	"time"

	"ftkv/wire"
)

// TestCASWithoutCurrentValue: a compare-and-swap that asks for no current
// value (FlagNoCurrent: SETNX through the gateway, the client's
// CompareAndSwap) is answered MISMATCH with FlagOldPresent and no value,
// also when retried; one that asks gets the value. (Every mismatch
// brought back the current value, up to 1 MiB, that the caller dropped.)
func TestCASWithoutCurrentValue(t *testing.T) {
	a, _ := pairOfTwo(t, "", false)
	cn := dialConn(t, a.client, false)
	k := []byte(keysOf("cas", 0, 2, 1)[0])
	big := bytes.Repeat([]byte("v"), 1<<20)
	if ans, err := cn.doRetry(&wire.Frame{Op: wire.OpPut, Key: k, Value: big}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put: %v %v", err, ans.Status)
	}
	cas := func(flags uint8, seq uint64) wire.Frame {
		t.Helper()
		ans, err := cn.doRetry(&wire.Frame{Op: wire.OpCAS, Flags: flags, Client: 7, Seq: seq, Key: k, Value: []byte("new")}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	for _, c := range []struct {
		name  string
		flags uint8
		seq   uint64
		want  int
	}{
		{"no current value", wire.FlagNoCurrent, 1, 0},
		{"no current value, retried", wire.FlagNoCurrent | wire.FlagRetry, 1, 0},
		{"the current value", 0, 2, len(big)},
	} {
		ans := cas(c.flags, c.seq)
		if ans.Status != wire.StatusMismatch || ans.Flags&wire.FlagOldPresent == 0 || len(ans.Value) != c.want {
			t.Errorf("%s: %v, flags %#x, %d bytes; want MISMATCH, the key present, %d bytes", c.name, ans.Status, ans.Flags, len(ans.Value), c.want)
		}
	}
	if ans, err := cn.do(&wire.Frame{Op: wire.OpGet, Key: k}, 10*time.Second); err != nil || !bytes.Equal(ans.Value, big) {
		t.Fatalf("get after the mismatches: %v %v, %d bytes", err, ans.Status, len(ans.Value))
	}
}
