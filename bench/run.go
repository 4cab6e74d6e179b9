package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// ErrTooManyErrors ends a run early once Config.MaxErrors operations have
// failed; Run returns it with the partial result.
var ErrTooManyErrors = errors.New("bench: too many errors")

// Phase names reported in Progress.
const (
	PhasePreload = "preload"
	PhaseRun     = "run"
)

// Progress is a snapshot of the phase under way, handed to Config.Progress.
type Progress struct {
	Phase    string        // PhasePreload or PhaseRun
	Ops      int64         // operations finished in this phase, errors included
	Errors   int64         // failed operations and connection attempts so far
	Total    int64         // operations the phase will do; 0 when bounded by Duration
	Duration time.Duration // the phase's length when bounded by time
	Elapsed  time.Duration
	Done     bool // last call of the phase
}

// Histogram range: latencies in microseconds, 1µs to 100s, 3 significant digits.
const (
	histMin    = 1
	histMax    = 100_000_000
	histDigits = 3
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// Run opens cfg.Connections requesters on t, preloads the key space if
// cfg asks for it, then runs the workload until cfg.Ops operations are done,
// cfg.Duration has passed or ctx ends, and returns the measurements. Ending
// ctx stops the run early (Result.Interrupted) and is not an error. It fails
// when the config is invalid, the target cannot be reached or the preload
// fails; with ErrTooManyErrors it returns the partial result too.
func Run(ctx context.Context, cfg Config, t Target) (*Result, error) {
	cfg, seed, ws, err := start(ctx, cfg, t)
	if err != nil {
		return nil, err
	}
	defer closeWorkers(ws)

	res := newResult(cfg, t, seed)
	if cfg.preload() {
		p, err := preload(ctx, cfg, ws)
		res.Preload = p
		if err != nil {
			return nil, err
		}
		if p.Interrupted {
			res.Interrupted = true
			return res, nil
		}
	}
	var sr *series
	if cfg.SeriesInterval > 0 {
		sr = newSeries(cfg.SeriesInterval)
	}
	ph := runPhase(ctx, cfg, ws, PhaseRun, cfg.Ops, cfg.Duration, (*worker).runBatch, sr)
	res.fill(ws, ph)
	if sr != nil {
		res.Series = sr.points(ph.elapsed)
		res.Events = sr.events
	}
	if ph.aborted.Load() {
		return res, fmt.Errorf("%w: %d failed, stopped early; first: %v", ErrTooManyErrors, res.Errors+res.ConnectErrors, res.FirstError)
	}
	return res, nil
}

// start validates cfg (with defaults filled in), picks the seed and opens
// the requesters.
func start(ctx context.Context, cfg Config, t Target) (Config, uint64, []*worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, 0, nil, err
	}
	open := t.NewRequester
	if cfg.Goroutines > 1 {
		st, ok := t.(SharedTarget)
		if !ok {
			return cfg, 0, nil, fmt.Errorf("%w: target %s cannot share a requester between goroutines", ErrConfig, t.Name())
		}
		open = st.NewSharedRequester
	}
	seed := cfg.Seed
	for seed == 0 {
		seed = rand.Uint64()
	}
	reqs, err := openRequesters(ctx, open, cfg.Connections)
	if err != nil {
		if ctx.Err() != nil {
			return cfg, 0, nil, fmt.Errorf("bench: interrupted while connecting: %w", err)
		}
		return cfg, 0, nil, err
	}
	return cfg, seed, newWorkers(cfg, t, seed, reqs), nil
}

// Preload only writes every key of cfg's key space once (cfg.Keys puts of
// cfg.ValueSize bytes, cfg.Connections requesters with cfg.Pipeline
// operations in flight each, or more: preloadBatchLen), with no measured
// phase.
func Preload(ctx context.Context, cfg Config, t Target) (*PreloadResult, error) {
	cfg, _, ws, err := start(ctx, cfg, t)
	if err != nil {
		return nil, err
	}
	defer closeWorkers(ws)
	return preload(ctx, cfg, ws)
}

// newWorkers makes cfg.Goroutines workers (goroutines) per requester; the
// workers of a requester share its latency histograms.
func newWorkers(cfg Config, t Target, seed uint64, reqs []Requester) []*worker {
	g := cfg.Goroutines
	ws := make([]*worker, len(reqs)*g)
	var lat *latencies
	for i := range ws {
		lane := i % g
		if lane == 0 {
			lat = newLatencies()
		}
		ws[i] = &worker{
			id:   i,
			lane: lane,
			t:    t,
			cfg:  cfg,
			req:  reqs[i/g],
			gen:  newGenerator(cfg, seed, i),
			ops:  make([]Op, cfg.Pipeline),
			lat:  lat,
		}
		if g > 1 {
			ws[i].pending = make([]pendingLatency, 0, pendingLatencies)
		}
	}
	return ws
}

// closeWorkers closes every requester once: a shared one through its
// first worker.
func closeWorkers(ws []*worker) {
	for _, w := range ws {
		if w.req != nil && w.lane == 0 {
			w.req.Close()
		}
	}
}

// openRequesters opens n requesters in parallel; the first failure closes
// the others and is returned.
func openRequesters(ctx context.Context, open func(context.Context) (Requester, error), n int) ([]Requester, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reqs := make([]Requester, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // don't flood the listener's backlog
	for i := range reqs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			reqs[i], errs[i] = open(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, r := range reqs {
			if r != nil {
				r.Close()
			}
		}
		for _, e := range errs {
			if e != nil {
				return nil, e // one line: the first failure stands for all
			}
		}
	}
	return reqs, nil
}

// Preloading pipelines more puts than a run of pipeline depth 1 sends:
// it is not measured, and one put at a time per connection made `bench -n
// 1000` wait 9-15 s for 100,000 keys on a busy machine before its first
// measured operation. A worker's batch stays under preloadBatchBytes of
// keys and values, and at most preloadDepth puts.
const (
	preloadDepth      = 32
	preloadBatchBytes = 1 << 20
)

// preloadBatchLen is how many puts a worker sends at once while it
// preloads: the run's pipeline depth, or more for small values (not when
// goroutines share a requester: they keep many puts in flight on it).
func preloadBatchLen(cfg Config) int {
	if cfg.Goroutines > 1 {
		return cfg.Pipeline
	}
	perPut := cfg.ValueSize + len(AppendKey(nil, max(cfg.Keys-1, 0)))
	return max(cfg.Pipeline, min(preloadDepth, preloadBatchBytes/max(perPut, 1)))
}

// preload writes every key once, each worker a contiguous slice of the key
// space in batches of preloadBatchLen puts. Any failure ends it.
func preload(ctx context.Context, cfg Config, ws []*worker) (*PreloadResult, error) {
	n := len(ws)
	depth := preloadBatchLen(cfg)
	for i, w := range ws {
		w.next = i * cfg.Keys / n
		w.end = (i + 1) * cfg.Keys / n
		run := w.ops
		w.ops = make([]Op, depth)
		defer func() { w.ops = run }()
	}
	ph := runPhase(ctx, cfg, ws, PhasePreload, int64(cfg.Keys), 0, (*worker).preloadBatch, nil)
	p := &PreloadResult{Seconds: ph.elapsed.Seconds(), Interrupted: ph.interrupted}
	var first error
	for _, w := range ws {
		p.Keys += w.puts
		p.Errors += w.errs + w.connErrs
		if first == nil {
			first = w.firstErr
		}
		w.resetCounts()
	}
	if p.Seconds > 0 {
		p.PutsPerSec = float64(p.Keys) / p.Seconds
	}
	if first != nil && !p.Interrupted {
		return p, fmt.Errorf("preload: %d of %d keys failed; first: %w", p.Errors, cfg.Keys, first)
	}
	return p, nil
}

// phase is the shared state of the workers during one phase.
type phase struct {
	stopped   atomic.Bool
	stopOnce  sync.Once
	stopCh    chan struct{}
	total     int64 // 0: until stopped
	claimed   atomic.Int64
	errors    atomic.Int64
	maxErrors int64

	aborted     atomic.Bool // stopped by maxErrors
	interrupted bool
	elapsed     time.Duration
}

func (ph *phase) stop() {
	ph.stopOnce.Do(func() {
		ph.stopped.Store(true)
		close(ph.stopCh)
	})
}

// claim reserves up to want operations of the phase's total.
func (ph *phase) claim(want int) int {
	if ph.total == 0 {
		return want
	}
	end := ph.claimed.Add(int64(want))
	start := end - int64(want)
	if start >= ph.total {
		return 0
	}
	return int(min(end, ph.total) - start)
}

// failed adds n failures to the phase's count and stops the phase once
// they exceed the budget.
func (ph *phase) failed(n int64) {
	if total := ph.errors.Add(n); ph.maxErrors > 0 && total >= ph.maxErrors && !ph.stopped.Load() {
		ph.aborted.Store(true)
		ph.stop()
	}
}

type batchFunc func(w *worker, ph *phase) bool

// runPhase runs step on every worker until it returns false, total
// operations are claimed, d has passed or ctx ends. With sr, the workers
// record the phase's time series in it and cfg.Fault runs alongside.
func runPhase(ctx context.Context, cfg Config, ws []*worker, name string, total int64, d time.Duration, step batchFunc, sr *series) *phase {
	ph := &phase{stopCh: make(chan struct{}), total: total, maxErrors: cfg.MaxErrors}
	var interrupted atomic.Bool
	stopWatch := context.AfterFunc(ctx, func() {
		interrupted.Store(true)
		ph.stop()
	})
	defer stopWatch()

	base := context.WithoutCancel(ctx) // ops in flight finish after ctrl+c
	start := time.Now()
	if total == 0 {
		t := time.AfterFunc(d, ph.stop)
		defer t.Stop()
	}
	var wg sync.WaitGroup
	var faultDone chan struct{}
	cancelFault := func() {}
	if sr != nil {
		sr.start = start
		if cfg.Fault != nil {
			var fctx context.Context
			fctx, cancelFault = context.WithCancel(ctx)
			faultDone = make(chan struct{})
			go func() {
				defer close(faultDone)
				cfg.Fault(fctx, sr.mark)
			}()
		}
	}
	for _, w := range ws {
		w.rec = nil
		if sr != nil {
			w.rec = newRecorder(sr)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(base, ph, step)
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	// Watchdog and progress: cancel batches past the timeout, report.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	report := func(last bool) {
		if cfg.Progress == nil {
			return
		}
		p := Progress{Phase: name, Total: total, Elapsed: time.Since(start), Done: last, Errors: ph.errors.Load()}
		if total == 0 {
			p.Duration = d
		}
		for _, w := range ws {
			p.Ops += w.progress.Load()
		}
		cfg.Progress(p)
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		case now := <-tick.C:
			for _, w := range ws {
				w.watchdog(now, cfg.Timeout)
			}
			report(false)
		}
	}
	ph.elapsed = time.Since(start)
	ph.interrupted = interrupted.Load()
	cancelFault()
	if faultDone != nil {
		<-faultDone
	}
	report(true)
	return ph
}

// worker is the loop state of one goroutine driving a requester: the
// requester's only one, or one of the Config.Goroutines sharing it. Only its
// own goroutine touches it during a phase, apart from the atomics and lat.
type worker struct {
	id   int
	lane int // index among the goroutines sharing req; 0 owns req and lat
	t    Target
	cfg  Config
	req  Requester
	gen  *generator
	ops  []Op
	rec  *recorder // the measured phase's series; nil: not recorded

	// lat holds the requester's latencies. A worker that shares it
	// gathers them in pending and adds them under lat's lock a few
	// hundred at a time, so that the goroutines of one client do not
	// contend on the load generator's own lock at every operation.
	lat      *latencies
	pending  []pendingLatency // nil: lat is this worker's alone
	gets     int64
	puts     int64
	misses   int64
	errs     int64
	connErrs int64
	reconns  int64
	firstErr error

	next, end int // preload: keys [next, end) still to write

	cur        atomic.Pointer[opCtx]
	batchStart atomic.Int64 // unix nanos of the batch in flight, 0 when idle
	_          [64]byte     // keep progress off the cache line above
	progress   atomic.Int64
}

// opCtx is the context of a worker's operations. It lasts across batches
// (a context per batch would cost a timer each) and is cancelled by the
// watchdog when a batch runs past the timeout.
type opCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (w *worker) resetCounts() {
	w.gets, w.puts, w.misses, w.errs, w.connErrs, w.reconns = 0, 0, 0, 0, 0, 0
	w.firstErr = nil
	w.pending = w.pending[:0]
	if w.lane == 0 {
		w.lat.reset()
	}
	w.progress.Store(0)
}

func (w *worker) loop(base context.Context, ph *phase, step batchFunc) {
	defer func() {
		w.flushLatencies()
		if w.rec != nil {
			w.rec.flush()
		}
		if c := w.cur.Swap(nil); c != nil {
			c.cancel()
		}
	}()
	for !ph.stopped.Load() {
		if w.req == nil && !w.reconnect(base, ph) {
			continue
		}
		if c := w.cur.Load(); c == nil || c.ctx.Err() != nil {
			ctx, cancel := context.WithCancel(base)
			w.cur.Store(&opCtx{ctx, cancel})
		}
		if !step(w, ph) {
			return
		}
	}
}

// reconnect replaces a broken requester; false after a failed attempt.
func (w *worker) reconnect(base context.Context, ph *phase) bool {
	ctx, cancel := context.WithTimeout(base, w.cfg.Timeout)
	r, err := w.t.NewRequester(ctx)
	cancel()
	if err == nil {
		w.req = r
		w.reconns++
		return true
	}
	w.connErrs++
	w.noteErr(err)
	ph.failed(1)
	select { // back off, but not past the end of the phase
	case <-ph.stopCh:
	case <-time.After(100 * time.Millisecond):
	}
	return false
}

// watchdog cancels the batch in flight if it started more than timeout ago.
func (w *worker) watchdog(now time.Time, timeout time.Duration) {
	if s := w.batchStart.Load(); s != 0 && now.UnixNano()-s > int64(timeout) {
		if c := w.cur.Load(); c != nil {
			c.cancel()
		}
	}
}

// do sends batch and accounts for the outcome; histograms record only
// answered operations, in microseconds.
func (w *worker) do(ph *phase, batch []Op) {
	w.batchStart.Store(time.Now().UnixNano())
	err := w.req.Do(w.cur.Load().ctx, batch)
	w.batchStart.Store(0)
	if err != nil && w.pending == nil { // a shared requester is never replaced (and should not break)
		w.req.Close()
		w.req = nil
	}
	rec := w.rec
	if rec != nil {
		rec.at(time.Now())
	}
	var failed int64
	for i := range batch {
		op := &batch[i]
		if !op.Done || op.Err != nil {
			failed++
			if op.Err != nil {
				w.noteErr(op.Err)
			} else {
				w.noteErr(err)
			}
			continue
		}
		us := min(max(op.Latency.Microseconds(), histMin), histMax)
		if rec != nil {
			rec.ops++
			_ = rec.hist.RecordValue(us)
		}
		if op.Kind == Get {
			w.gets++
			if op.Miss {
				w.misses++
			}
		} else {
			w.puts++
		}
		w.record(op.Kind, us)
	}
	w.errs += failed
	if rec != nil {
		rec.errs += failed
	}
	if failed > 0 {
		ph.failed(failed)
	}
	w.progress.Add(int64(len(batch)))
}

func (w *worker) noteErr(err error) {
	if w.firstErr == nil && err != nil {
		w.firstErr = err
	}
}

// runBatch is one step of the measured phase.
func (w *worker) runBatch(ph *phase) bool {
	n := ph.claim(len(w.ops))
	if n == 0 {
		return false
	}
	batch := w.ops[:n]
	w.gen.fill(batch)
	w.do(ph, batch)
	return true
}

// preloadBatch is one step of the preload: the next puts of w's key slice.
func (w *worker) preloadBatch(ph *phase) bool {
	n := min(len(w.ops), w.end-w.next)
	if n <= 0 {
		return false
	}
	batch := w.ops[:n]
	w.gen.fillPuts(batch, w.next)
	w.do(ph, batch)
	w.next += n
	if w.errs > 0 {
		ph.stop() // a failed preload is reported, not measured
	}
	return true
}

// latencies are a requester's histograms of answered operations, in
// microseconds.
type latencies struct {
	mu       sync.Mutex // taken only when goroutines share the requester
	get, put *hdrhistogram.Histogram
}

func newLatencies() *latencies { return &latencies{get: newHistogram(), put: newHistogram()} }

func (l *latencies) record(k Kind, us int64) {
	if k == Get {
		_ = l.get.RecordValue(us)
	} else {
		_ = l.put.RecordValue(us)
	}
}

func (l *latencies) reset() {
	l.get.Reset()
	l.put.Reset()
}

// pendingLatencies is how many latencies a worker sharing a requester
// gathers before taking the requester's lock.
const pendingLatencies = 256

type pendingLatency struct {
	kind Kind
	us   int64
}

// record adds one answered operation's latency.
func (w *worker) record(k Kind, us int64) {
	if w.pending == nil {
		w.lat.record(k, us)
		return
	}
	w.pending = append(w.pending, pendingLatency{k, us})
	if len(w.pending) == cap(w.pending) {
		w.flushLatencies()
	}
}

// flushLatencies adds the gathered latencies to the shared histograms.
func (w *worker) flushLatencies() {
	if len(w.pending) == 0 {
		return
	}
	w.lat.mu.Lock()
	for _, p := range w.pending {
		w.lat.record(p.kind, p.us)
	}
	w.lat.mu.Unlock()
	w.pending = w.pending[:0]
}
