package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/zeebo/xxh3"

	"ftkv/client"
	"ftkv/internal/testcluster"
)

// kvOp names an operation of the per-key model.
type kvOp uint8

const (
	opGet kvOp = iota
	opPut
	opDelete
	opCAS
	opAppend
)

func (o kvOp) String() string {
	return [...]string{"get", "put", "delete", "cas", "append"}[o]
}

// kvInput is what a recorded operation asked for.
type kvInput struct {
	op         kvOp
	key        string
	value      string // put / append / new value of a CAS
	old        string // CAS: expected value
	oldPresent bool   // CAS: false = only if absent
}

// kvOutput is what it got back.
type kvOutput struct {
	ok       bool   // CAS: swapped
	present  bool   // get: found; CAS with curKnown: key present on mismatch
	value    string // get: the value; CAS with curKnown: the current value
	curKnown bool   // CAS answered through CompareAndSwapCurrent
}

// kvState is the model state of one key.
type kvState struct {
	present bool
	value   string
}

func (s kvState) String() string {
	if !s.present {
		return "(absent)"
	}
	return fmt.Sprintf("%q", s.value)
}

// kvModel is the sequential specification of one key, partitioned by key:
// Append on an absent key creates it, CAS with old absent succeeds only if
// the key is absent, Delete makes it absent.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return kvState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		switch in.op {
		case opGet:
			if out.present != st.present || (st.present && out.value != st.value) {
				return false, st
			}
			return true, st
		case opPut:
			return true, kvState{present: true, value: in.value}
		case opDelete:
			return true, kvState{}
		case opAppend:
			return true, kvState{present: true, value: st.value + in.value}
		case opCAS:
			match := !st.present
			if in.oldPresent {
				match = st.present && st.value == in.old
			}
			if out.ok != match {
				return false, st
			}
			if match {
				return true, kvState{present: true, value: in.value}
			}
			if out.curKnown && (out.present != st.present || (st.present && out.value != st.value)) {
				return false, st
			}
			return true, st
		}
		return false, st
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch in.op {
		case opGet:
			if !out.present {
				return fmt.Sprintf("get(%s) -> absent", in.key)
			}
			return fmt.Sprintf("get(%s) -> %q", in.key, out.value)
		case opPut:
			return fmt.Sprintf("put(%s, %q)", in.key, in.value)
		case opDelete:
			return fmt.Sprintf("delete(%s)", in.key)
		case opAppend:
			return fmt.Sprintf("append(%s, %q)", in.key, in.value)
		case opCAS:
			old := "absent"
			if in.oldPresent {
				old = fmt.Sprintf("%q", in.old)
			}
			res := fmt.Sprintf("%v", out.ok)
			if !out.ok && out.curKnown {
				res += " cur=" + kvState{out.present, out.value}.String()
			}
			return fmt.Sprintf("cas(%s, %s, %q) -> %s", in.key, old, in.value, res)
		}
		return "?"
	},
	Hash: func(state interface{}) uint64 {
		st := state.(kvState)
		if !st.present {
			return 0
		}
		return xxh3.HashString(st.value) | 1
	},
	DescribeState: func(state interface{}) string { return state.(kvState).String() },
}

// checkHistory runs porcupine on history. On anything but Ok it saves the
// history and porcupine's visualization in a directory that outlives the
// test and logs their paths. The verbose check that feeds the
// visualization is far slower (it tracks partial linearizations at every
// backtrack), so it runs only after a failure.
func checkHistory(t *testing.T, history []porcupine.Operation, timeout time.Duration) porcupine.CheckResult {
	t.Helper()
	start := time.Now()
	res := porcupine.CheckOperationsTimeout(kvModel, history, timeout)
	t.Logf("porcupine: %s on %d operations in %s", res, len(history), time.Since(start).Round(time.Millisecond))
	if res == porcupine.Ok {
		return res
	}
	dir, err := os.MkdirTemp("", "ftkv-porcupine-")
	if err != nil {
		t.Logf("cannot save the history: %v", err)
		return res
	}
	base := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := writeHistory(history, base+".jsonl"); err == nil {
		t.Logf("history: %s.jsonl", base)
	}
	_, info := porcupine.CheckOperationsVerbose(kvModel, history, timeout)
	if err := porcupine.VisualizePath(kvModel, info, base+".html"); err == nil {
		t.Logf("porcupine visualization: %s.html", base)
	} else {
		t.Logf("porcupine visualization failed: %v", err)
	}
	return res
}

// histOp is one recorded operation as a line of a saved history.
type histOp struct {
	Client     int    `json:"client"`
	Call       int64  `json:"call"`
	Return     int64  `json:"return"`
	Op         string `json:"op"`
	Key        string `json:"key"`
	Value      string `json:"value,omitempty"`
	Old        string `json:"old,omitempty"`
	OldPresent bool   `json:"old_present,omitempty"`
	OK         bool   `json:"ok,omitempty"`
	Present    bool   `json:"present,omitempty"`
	Got        string `json:"got,omitempty"`
	CurKnown   bool   `json:"cur_known,omitempty"`
}

// writeHistory saves history as JSON lines, one operation a line, sorted
// by call time, for a look at what went wrong.
func writeHistory(history []porcupine.Operation, path string) error {
	h := append([]porcupine.Operation(nil), history...)
	sort.Slice(h, func(i, j int) bool { return h[i].Call < h[j].Call })
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, op := range h {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		_ = enc.Encode(histOp{Client: op.ClientId, Call: op.Call, Return: op.Return, Op: in.op.String(),
			Key: in.key, Value: in.value, Old: in.old, OldPresent: in.oldPresent,
			OK: out.ok, Present: out.present, Got: out.value, CurKnown: out.curKnown})
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// TestLinearizable drives 16 goroutines over 4 clients with random Get, Put,
// Delete, CompareAndSwap and Append on 4 keys of a 3-server cluster,
// records every call and answer with its start and end time, and checks the
// history per key with porcupine.
func TestLinearizable(t *testing.T) {
	t.Run("checker rejects illegal histories", testCheckerRejects)

	const (
		workers      = 16
		clients      = 4
		keys         = 4
		duration     = 3500 * time.Millisecond
		maxOpsEach   = 1500
		opTimeout    = 5 * time.Second
		checkTimeout = 2 * time.Minute
	)
	c := testcluster.Start(t, testcluster.Options{N: 3})
	cls := make([]*client.Client, clients)
	for i := range cls {
		cls[i] = c.Client(client.WithConnsPerServer(1 + i%2))
	}
	base := seed(t)
	keyNames := make([]string, keys)
	for i := range keyNames {
		keyNames[i] = fmt.Sprintf("lin-%d", i)
	}

	t0 := time.Now()
	now := func() int64 { return int64(time.Since(t0)) }
	deadline := t0.Add(duration)
	histories := make([][]porcupine.Operation, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(base + int64(g)))
			cl := cls[(g/keys)%clients]
			// The last value this goroutine saw per key: CAS expects it,
			// so that some swaps succeed.
			seen := map[string]kvState{}
			for i := 0; i < maxOpsEach && time.Now().Before(deadline); i++ {
				// Each goroutine works on two neighbouring keys, so at most
				// 8 goroutines contend for one key: a stall of the machine
				// then leaves at most 8 overlapping operations per key, which
				// keeps porcupine's search (exponential in the overlap)
				// quick, while every key still sees 8 writers from 4 clients.
				key := keyNames[(g+rng.Intn(2))%keys]
				in := kvInput{key: key}
				var out kvOutput
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				call := now()
				var err error
				switch r := rng.Intn(100); {
				case r < 30:
					in.op = opGet
					var v []byte
					v, err = cl.Get(ctx, key)
					if errors.Is(err, client.ErrNotFound) {
						err = nil
					} else if err == nil {
						out.present, out.value = true, string(v)
					}
					seen[key] = kvState{out.present, out.value}
				case r < 50:
					in.op, in.value = opPut, fmt.Sprintf("g%d-%d", g, i)
					err = cl.Put(ctx, key, []byte(in.value))
				case r < 60:
					in.op = opDelete
					err = cl.Delete(ctx, key)
				case r < 80:
					in.op, in.value = opCAS, fmt.Sprintf("c%d-%d", g, i)
					var old []byte
					if s := seen[key]; s.present && rng.Intn(3) > 0 {
						in.old, in.oldPresent = s.value, true
						old = []byte(s.value)
					}
					if rng.Intn(2) == 0 {
						out.ok, err = cl.CompareAndSwap(ctx, key, old, []byte(in.value))
					} else {
						var cur []byte
						out.ok, cur, err = cl.CompareAndSwapCurrent(ctx, key, old, []byte(in.value))
						out.curKnown = true
						out.present, out.value = cur != nil, string(cur)
						if !out.ok {
							seen[key] = kvState{out.present, out.value}
						}
					}
				default:
					in.op, in.value = opAppend, fmt.Sprintf("a%d.%d;", g, i)
					err = cl.Append(ctx, key, []byte(in.value))
				}
				ret := now()
				cancel()
				if err != nil {
					// Nothing is injected here: every call must succeed.
					errs <- fmt.Errorf("worker %d op %d %s(%s): %w", g, i, in.op, key, err)
					return
				}
				histories[g] = append(histories[g], porcupine.Operation{
					ClientId: g, Input: in, Call: call, Output: out, Return: ret})
			}
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(t0)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	var history []porcupine.Operation
	counts := map[string]int{}
	for _, h := range histories {
		history = append(history, h...)
		for _, op := range h {
			in, out := op.Input.(kvInput), op.Output.(kvOutput)
			counts[in.op.String()]++
			if in.op == opGet && out.present {
				counts["get found"]++
			}
			if in.op == opCAS && out.ok {
				counts["cas swapped"]++
				if in.oldPresent {
					counts["cas swapped from a value"]++
				}
			}
		}
	}
	t.Logf("%d operations in %s (%.0f ops/s): %v", len(history), elapsed.Round(time.Millisecond),
		float64(len(history))/elapsed.Seconds(), counts)
	// Guard against a vacuous run: the history must exercise every kind of
	// answer the model distinguishes.
	for _, k := range []string{"get", "put", "delete", "cas", "append", "get found", "cas swapped", "cas swapped from a value"} {
		if counts[k] == 0 {
			t.Fatalf("no %q operation in the history: the check would prove little", k)
		}
	}
	if len(history) < 500 {
		t.Fatalf("only %d operations recorded; want at least 500", len(history))
	}
	if res := checkHistory(t, history, checkTimeout); res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable: %s", len(history), res)
	}
}

// testCheckerRejects feeds the model hand-made histories so that
// TestLinearizable cannot pass because the checker accepts anything.
func testCheckerRejects(t *testing.T) {
	op := func(client int, call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	put := func(k, v string) kvInput { return kvInput{op: opPut, key: k, value: v} }
	app := func(k, v string) kvInput { return kvInput{op: opAppend, key: k, value: v} }
	get := kvInput{op: opGet, key: "k"}
	cases := []struct {
		name string
		h    []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"stale read after a completed put", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(0, 20, 30, put("k", "b"), kvOutput{}),
			op(1, 40, 50, get, kvOutput{present: true, value: "a"}),
		}, porcupine.Illegal},
		{"read of a value never written", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(1, 5, 15, get, kvOutput{present: true, value: "z"}),
		}, porcupine.Illegal},
		{"append applied twice", []porcupine.Operation{
			op(0, 0, 10, app("k", "x;"), kvOutput{}),
			op(1, 20, 30, get, kvOutput{present: true, value: "x;x;"}),
		}, porcupine.Illegal},
		{"two only-if-absent CAS both win", []porcupine.Operation{
			op(0, 0, 10, kvInput{op: opCAS, key: "k", value: "p"}, kvOutput{ok: true}),
			op(1, 0, 10, kvInput{op: opCAS, key: "k", value: "q"}, kvOutput{ok: true}),
		}, porcupine.Illegal},
		{"CAS mismatch reports a wrong current value", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(1, 20, 30, kvInput{op: opCAS, key: "k", old: "b", oldPresent: true, value: "c"},
				kvOutput{curKnown: true, present: true, value: "zz"}),
		}, porcupine.Illegal},
		{"read of a deleted key", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(0, 20, 30, kvInput{op: opDelete, key: "k"}, kvOutput{}),
			op(1, 40, 50, get, kvOutput{present: true, value: "a"}),
		}, porcupine.Illegal},
		// The same shapes, made legal by concurrency, must pass.
		{"concurrent put may be read either way", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(0, 20, 50, put("k", "b"), kvOutput{}),
			op(1, 30, 40, get, kvOutput{present: true, value: "a"}),
			op(2, 30, 60, kvInput{op: opCAS, key: "k", old: "a", oldPresent: true, value: "c"}, kvOutput{ok: true}),
			op(3, 70, 80, app("k", "x"), kvOutput{}),
			op(3, 90, 95, get, kvOutput{present: true, value: "bx"}),
		}, porcupine.Ok},
	}
	for _, tc := range cases {
		res := porcupine.CheckOperationsTimeout(kvModel, tc.h, 10*time.Second)
		if res != tc.want {
			t.Errorf("%s: porcupine says %s, want %s", tc.name, res, tc.want)
		}
	}
}
