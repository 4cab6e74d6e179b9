package e2e

// The per-key linearizability model, the porcupine check and the recording
// of histories under load, shared by TestLinearizable and the failover tests.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/zeebo/xxh3"

	"ftkv/client"
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
	// unknown: the call ended with an error, so whether it took effect is
	// unknown. Such a write is recorded as still pending at the end of the
	// history (see pendingReturn): porcupine may then place it anywhere
	// after its call, or after every other operation of its key, where it
	// is harmless — exactly "applied at some point, or never".
	unknown bool
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
			if out.unknown {
				// Applied if it matched (or linearized last, where it
				// changes nothing anyone observed).
				if match {
					return true, kvState{present: true, value: in.value}
				}
				return true, st
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
		if out.unknown && in.op != opCAS {
			return fmt.Sprintf("%s(%s, %q) -> ? (error)", in.op, in.key, in.value)
		}
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
			if out.unknown {
				res = "?"
			} else if !out.ok && out.curKnown {
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
	Unknown    bool   `json:"unknown,omitempty"`
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
			OK: out.ok, Present: out.present, Got: out.value, CurKnown: out.curKnown, Unknown: out.unknown})
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// randomOp performs worker g's i-th call on key, drawn from the mix of
// TestLinearizable: 30% Get, 20% Put, 10% Delete, 20% CompareAndSwap (half
// through CompareAndSwapCurrent), 20% Append. Values embed g and i, so they
// are unique per worker and call. seen holds the last value the worker saw
// per key, which CAS mostly expects, so that some swaps succeed. On an error
// the output of a write says its outcome is unknown.
func randomOp(ctx context.Context, cl *client.Client, rng *rand.Rand, g, i int, key string, seen map[string]kvState) (kvInput, kvOutput, error) {
	in := kvInput{key: key}
	var out kvOutput
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
		if err == nil {
			seen[key] = kvState{out.present, out.value}
		}
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
			if !out.ok && err == nil {
				seen[key] = kvState{out.present, out.value}
			}
		}
	default:
		in.op, in.value = opAppend, fmt.Sprintf("a%d.%d;", g, i)
		err = cl.Append(ctx, key, []byte(in.value))
	}
	if err != nil && in.op != opGet {
		out = kvOutput{unknown: true}
	}
	return in, out, err
}

// pendingReturn is the return time recorded for a write whose outcome is
// unknown (its call failed): after every other operation, as if it were
// still in flight when the history ends.
const pendingReturn = math.MaxInt64 / 2

// history collects operations from many goroutines.
type history struct {
	t0  time.Time
	mu  sync.Mutex
	ops []porcupine.Operation
}

func newHistory() *history { return &history{t0: time.Now()} }

// now is the time of a call or return, in nanoseconds since the start.
func (h *history) now() int64 { return int64(time.Since(h.t0)) }

// add records one call. A failed Get tells nothing and is dropped; a failed
// write may or may not have been applied and stays pending forever.
func (h *history) add(clientID int, in kvInput, out kvOutput, call, ret int64, err error) {
	if err != nil {
		if in.op == opGet {
			return
		}
		ret = pendingReturn
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: clientID, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
}

// operations returns a copy of what was recorded.
func (h *history) operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// workloadConfig configures startWorkload.
type workloadConfig struct {
	Clients    []*client.Client
	Keys       []string // the keys operated on; spread them over all shards
	Workers    int
	OpTimeout  time.Duration // per call; generous, so that an error means a real failure
	MaxOpsEach int           // bound per worker, to keep porcupine quick (0 = none)
	Seed       int64
}

// workload is concurrent random load (randomOp) that records a porcupine
// history until stopped.
type workload struct {
	cfg    workloadConfig
	hist   *history
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	done   atomic.Int64 // calls finished, with or without error
	ctx    context.Context
	cancel context.CancelFunc // aborts calls in flight when a test gives up

	mu   sync.Mutex
	nerr int
	errs []string // the first few errors
}

// startWorkload starts cfg.Workers goroutines; worker g uses client
// g%len(Clients) and three neighbouring keys starting at g, so each key sees
// a few writers from different clients. When the test ends without Stop
// (it failed), calls in flight are aborted.
func startWorkload(t *testing.T, cfg workloadConfig) *workload {
	w := &workload{cfg: cfg, hist: newHistory(), stop: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { w.cancel(); w.Stop() })
	for g := 0; g < cfg.Workers; g++ {
		w.wg.Add(1)
		go w.worker(g)
	}
	return w
}

func (w *workload) worker(g int) {
	defer w.wg.Done()
	rng := rand.New(rand.NewSource(w.cfg.Seed + int64(g)))
	cl := w.cfg.Clients[g%len(w.cfg.Clients)]
	seen := map[string]kvState{}
	for i := 0; w.cfg.MaxOpsEach == 0 || i < w.cfg.MaxOpsEach; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		key := w.cfg.Keys[(g+rng.Intn(3))%len(w.cfg.Keys)]
		ctx, cancel := context.WithTimeout(w.ctx, w.cfg.OpTimeout)
		call := w.hist.now()
		in, out, err := randomOp(ctx, cl, rng, g, i, key, seen)
		ret := w.hist.now()
		cancel()
		w.hist.add(g, in, out, call, ret, err)
		w.done.Add(1)
		if err != nil {
			w.mu.Lock()
			w.nerr++
			if len(w.errs) < 10 {
				w.errs = append(w.errs, fmt.Sprintf("t=%s worker %d %s(%s) after %s: %v",
					time.Duration(call).Round(time.Millisecond), g, in.op, key, time.Duration(ret-call).Round(time.Millisecond), err))
			}
			w.mu.Unlock()
		}
	}
}

// Stop ends the load and waits for the workers' last calls.
func (w *workload) Stop() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// Done is the number of calls finished so far.
func (w *workload) Done() int64 { return w.done.Load() }

// Errors is the number of failed calls and the first few of them.
func (w *workload) Errors() (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nerr, append([]string(nil), w.errs...)
}

// finalReads reads every key once more after Stop, into the history: an
// acknowledged write that was lost then shows up as an illegal history.
func (w *workload) finalReads(t *testing.T, cl *client.Client) {
	t.Helper()
	for _, k := range w.cfg.Keys {
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
		call := w.hist.now()
		v, err := cl.Get(ctx, k)
		ret := w.hist.now()
		cancel()
		out := kvOutput{present: err == nil, value: string(v)}
		if errors.Is(err, client.ErrNotFound) {
			err = nil
		}
		if err != nil {
			t.Errorf("final read of %q: %v", k, err)
			continue
		}
		w.hist.add(-1, kvInput{op: opGet, key: k}, out, call, ret, nil)
	}
}

// check asserts that no call failed and that the history is linearizable.
func (w *workload) check(t *testing.T) {
	t.Helper()
	ops := w.hist.operations()
	counts := map[string]int{}
	for _, op := range ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		counts[in.op.String()]++
		switch {
		case out.unknown:
			counts["unknown outcome"]++
		case in.op == opGet && out.present:
			counts["get found"]++
		case in.op == opCAS && out.ok:
			counts["cas swapped"]++
		}
	}
	t.Logf("history: %d operations on %d keys: %v", len(ops), len(w.cfg.Keys), counts)
	nerr, errs := w.Errors()
	if nerr > 0 {
		t.Errorf("%d calls failed with a %s timeout (a retry within it should have succeeded); the first:\n%s",
			nerr, w.cfg.OpTimeout, strings.Join(errs, "\n"))
	}
	for _, k := range []string{"get", "put", "delete", "cas", "append", "get found", "cas swapped"} {
		if counts[k] == 0 {
			t.Errorf("no %q operation in the history: the check would prove little", k)
		}
	}
	if nerr > 200 {
		// Each unknown outcome stays pending to the end, and the search
		// is exponential in pending operations: it would only time out.
		t.Errorf("porcupine skipped: %d unknown outcomes", nerr)
		return
	}
	if res := checkHistory(t, ops, checkTimeout(len(ops))); res != porcupine.Ok {
		t.Errorf("history of %d operations is not linearizable: %s", len(ops), res)
	}
}

// checkTimeout is how long porcupine may search a history of n
// operations: a minute, or half a millisecond per operation on a long run
// (a 10-minute chaos run's 835k operations took 59 s on an idle machine
// and timed out at a minute on a busy one; TestReplayHistory rechecks a
// saved history without a limit).
func checkTimeout(n int) time.Duration {
	return max(time.Minute, time.Duration(n)*500*time.Microsecond)
}
