package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// readHistory loads a history saved by writeHistory.
func readHistory(path string) ([]porcupine.Operation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ops := map[string]kvOp{"get": opGet, "put": opPut, "delete": opDelete, "cas": opCAS, "append": opAppend}
	var out []porcupine.Operation
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var h histOp
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
			return nil, err
		}
		out = append(out, porcupine.Operation{ClientId: h.Client, Call: h.Call, Return: h.Return,
			Input:  kvInput{op: ops[h.Op], key: h.Key, value: h.Value, old: h.Old, oldPresent: h.OldPresent},
			Output: kvOutput{ok: h.OK, present: h.Present, value: h.Got, curKnown: h.CurKnown, unknown: h.Unknown}})
	}
	return out, sc.Err()
}

// TestReplayHistory checks a history a failed or inconclusive run saved
// (its log names the .jsonl file), with as much time as it takes:
// FTKV_HISTORY=/tmp/ftkv-porcupine-…/TestChaos.jsonl go test -run TestReplayHistory ./internal/e2e
func TestReplayHistory(t *testing.T) {
	path := os.Getenv("FTKV_HISTORY")
	if path == "" {
		t.Skip("FTKV_HISTORY names a saved history to check")
	}
	ops, err := readHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if res := checkHistory(t, ops, 24*time.Hour); res != porcupine.Ok {
		t.Fatalf("%s: %d operations: %s", path, len(ops), res)
	}
}

// TestHistoryRoundTrip: a saved history reads back as it was written.
func TestHistoryRoundTrip(t *testing.T) {
	want := []porcupine.Operation{
		{ClientId: 1, Call: 10, Return: 20, Input: kvInput{op: opCAS, key: "k", value: "n", old: "o", oldPresent: true},
			Output: kvOutput{ok: false, present: true, value: "x", curKnown: true}},
		{ClientId: 2, Call: 15, Return: 30, Input: kvInput{op: opPut, key: "k", value: "v"}, Output: kvOutput{unknown: true}},
	}
	path := t.TempDir() + "/h.jsonl"
	if err := writeHistory(want, path); err != nil {
		t.Fatal(err)
	}
	got, err := readHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d operations read back, %d written", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("operation %d: %+v, wrote %+v", i, got[i], want[i])
		}
	}
}
