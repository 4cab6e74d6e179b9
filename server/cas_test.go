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

// TestCASDelete: a compare-and-delete (OpCAD) deletes the key on a match, on the primary and on the secondary (the write is replicated
// as a delete), and changes nothing on a mismatch; a retry is answered
// from the deduplication record and deletes nothing again.
func TestCASDelete(t *testing.T) {
	a, b := pairOfTwo(t, "always", false)
	cn := dialConn(t, a.client, false)
	k := []byte(keysOf("casdel", 0, 2, 1)[0])
	put := func(v string) {
		t.Helper()
		if ans, err := cn.doRetry(&wire.Frame{Op: wire.OpPut, Key: k, Value: []byte(v)}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("put: %v %v", err, ans.Status)
		}
	}
	get := func() (string, bool) {
		t.Helper()
		ans, err := cn.do(&wire.Frame{Op: wire.OpGet, Key: k}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return string(ans.Value), ans.Status == wire.StatusOK
	}
	del := func(old string, flags uint8, seq uint64) wire.Status {
		t.Helper()
		ans, err := cn.doRetry(&wire.Frame{Op: wire.OpCAD, Flags: wire.FlagOldPresent | wire.FlagNoCurrent | flags,
			Client: 9, Seq: seq, Key: k, Aux: []byte(old)}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return ans.Status
	}
	secondary := func() (string, bool) {
		b.secMu.Lock()
		st := b.sec[0]
		b.secMu.Unlock()
		st.mu.Lock()
		defer st.mu.Unlock()
		v, ok := st.t.get(k)
		return string(v), ok
	}

	put("v1")
	if st := del("v0", 0, 1); st != wire.StatusMismatch {
		t.Fatalf("compare-and-delete of another value: %v, want MISMATCH", st)
	}
	if v, ok := get(); !ok || v != "v1" {
		t.Fatalf("after a mismatched compare-and-delete: %q %v, want v1", v, ok)
	}
	if st := del("v1", 0, 2); st != wire.StatusOK {
		t.Fatalf("compare-and-delete of the value: %v, want OK", st)
	}
	if v, ok := get(); ok {
		t.Fatalf("after the compare-and-delete the primary has %q", v)
	}
	if v, ok := secondary(); ok {
		t.Fatalf("after the acknowledged compare-and-delete the secondary has %q", v)
	}
	put("v1")
	if st := del("v1", wire.FlagRetry, 2); st != wire.StatusOK {
		t.Fatalf("the retried compare-and-delete: %v, want OK (its first outcome)", st)
	}
	if v, ok := get(); !ok || v != "v1" {
		t.Fatalf("a retry of a compare-and-delete that was applied deleted again: %q %v", v, ok)
	}
}
