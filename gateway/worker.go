package gateway

import (
	"bytes"
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"github.com/tidwall/redcon"

	"ftkv/client"
	"ftkv/internal/auth"
	"ftkv/internal/connlimit"
)

// flushAt: answers are written once this many bytes are built (an answer
// holds up to a 1 MiB value), and at the end of each run of commands.
const flushAt = 64 << 10

// maxRun bounds the GETs and SETs of one pipeline sent as one batch (the
// values read are held until their answers are written), and runBytes
// the answers its GETs may take (getEst, runLen).
const (
	maxRun   = 64
	runBytes = 1 << 20
)

// A batch's GETs take values of at most their cap (client.BatchOp's
// MaxValue): getEst, and at least capFloor. A longer value is not sent
// back; that GET and the rest of its run go back to the session's queue,
// to run again with the estimate at its most (alone). So a batch's
// answers never take more than runBytes, whatever the values: sessions
// that read small values, then 64 GETs of 1 MiB at once, made the gateway
// hold 64 MiB each before the output limits could see any (an attack: 48
// connections, 1.6 GB).
const capFloor = 16 << 10

// getCap is the cap of a batched GET's value.
func (s *session) getCap() int { return max(s.getEst, capFloor) }

// work runs q, then the session's queue until it is empty; at most one
// worker runs per session (running, under mu), so commands run, and are
// answered, in order. A session whose answers pile up unread is parked
// with the rest.
func (s *session) work(q []command) {
	for {
		if len(q) == 0 {
			if q = s.take(); q == nil {
				return
			}
		}
		if rest := s.run(q); rest != nil {
			s.park(rest)
			return
		}
		q = nil
	}
}

// full reports whether the connection's queued answers are at the limit
// where its reading pauses (output_soft_limit, or the output budget
// spent): no more commands run for it until they drain. Its commands were
// read before (up to max_inflight of them): pausing the reading alone let
// a client that sends GETs of a large value and never reads make the
// gateway hold gigabytes.
func (s *session) full() bool {
	return s.lim != nil && !s.closed.Load() && s.lim.OutputFull(s.unseen.Load())
}

// waitRoom waits on the worker, for a command writing its answer as it
// grows (cmdMGet), until the connection's answers are under its limits
// (full); false if the connection or the gateway closed meanwhile (a
// client that never reads is closed after output_grace).
func (s *session) waitRoom() bool {
	for d := parkMin; s.full(); d = min(2*d, parkMax) {
		if s.gone() {
			return false
		}
		time.Sleep(d)
	}
	return !s.stop.Load()
}

// Park back-off: a parked session looks at its output again after
// parkMin, doubling up to parkMax. timing: exception — how promptly a
// slow reader's commands resume once it reads, unrelated to failure
// detection (a client that never reads is closed after output_grace).
const (
	parkMin = 5 * time.Millisecond
	parkMax = 100 * time.Millisecond
)

// park puts q back at the head of the queue and looks again later: the
// session stays running (no other worker takes it), and goes back to its
// collector once its answers drained (or is dropped once closed).
func (s *session) park(q []command) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(q[:len(q):len(q)], s.queue...)
	s.parkWait = parkMin
	if s.parkT == nil {
		s.parkT = time.AfterFunc(s.parkWait, s.unpark)
	} else {
		s.parkT.Reset(s.parkWait)
	}
}

// unpark is the park timer's.
func (s *session) unpark() {
	if s.stop.Load() {
		return
	}
	if s.full() {
		s.mu.Lock()
		s.parkWait = min(2*s.parkWait, parkMax)
		s.parkT.Reset(s.parkWait)
		s.mu.Unlock()
		return
	}
	s.col.add(s)
}

// take returns the queued commands, or nil when there are none (the
// session is then no longer running; a connection whose reading stopped
// at max_inflight is woken to read on).
func (s *session) take() []command {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	if len(q) > 0 && !s.stop.Load() {
		s.mu.Unlock()
		return q
	}
	s.running = false
	wake := s.stalled
	s.stalled = false
	s.mu.Unlock()
	if wake && !s.closed.Load() {
		_ = s.c.Wake(nil)
	}
	return nil
}

// run runs q in order: runs of plain GETs and SETs as batches, anything
// else one by one. It stops when the connection's answers pile up (full)
// and returns the commands not run.
func (s *session) run(q []command) []command {
	var out []byte
	for i := 0; i < len(q); {
		if s.stop.Load() {
			return nil
		}
		ro := q[i].readOnly()
		s.reading.Store(ro)
		if ro && s.closed.Load() {
			// Closed by its client: its reads are not worth their
			// answers; the rest runs (OnClose).
			s.skip(q[i : i+1])
			i++
			continue
		}
		if s.full() {
			s.flush(out, false)
			return q[i:]
		}
		n := s.runLen(q[i:])
		if n > 1 {
			each, w := s.batchCap(gets(q[i : i+n]))
			if !s.hold(w) {
				if s.stop.Load() || s.g.ctx.Err() != nil {
					return nil
				}
				// Its client closed while its GETs waited for the
				// fetch budget: they are given up, the writes after
				// them still run.
				s.skip(q[i : i+n])
				i += n
				continue
			}
			ops := batchOps(q[i:i+n], nil, each)
			start := time.Now()
			err := s.g.batch(ops)
			var done int
			out, done = s.replies(ops, err, time.Since(start), out)
			s.unhold(w)
			s.unqueue(q[i : i+done])
			n = done // (a GET over its cap runs again, alone)
		} else {
			var close bool
			before := len(out)
			out, close = s.one(q[i], out)
			s.unqueue(q[i : i+1])
			if n == 1 && len(q[i].args) == 2 { // (a plain GET)
				// A GET run alone (the batch bound let no second one
				// with it) teaches its size too, or a pipeline's GETs
				// would run alone for good.
				s.learnGet(len(out) - before)
			}
			if close && !(ro && s.closed.Load()) {
				// (A read given up as its client closed ends nothing:
				// the commands after it that write still run.) Nothing
				// queued after it runs, also what its loop reads until
				// the close: take and more hand out nothing once stop
				// is set (a review: SETs sent after CLIENT KILL of the
				// asker ran, a batch at a time, in 9 runs of 137).
				s.stop.Store(true)
				s.flush(out, true)
				s.mu.Lock()
				s.queue = nil
				s.mu.Unlock()
				s.retire() // (nothing else uncounts the dropped queue if its client closed first)
				return nil
			}
			n = 1
		}
		i += n
		if len(out) >= flushAt {
			s.flush(out, false)
			out = nil
		}
	}
	s.flush(out, false)
	return nil
}

// skip counts q as answered without running it (its client closed).
func (s *session) skip(q []command) {
	s.answered(len(q))
	s.unqueue(q)
}

// unqueue uncounts the bytes of q, run (session.queued, and
// Gateway.queued unless the session was retired).
func (s *session) unqueue(q []command) {
	n := 0
	for i := range q {
		n += q[i].size
	}
	s.mu.Lock()
	s.queued.Add(-int64(n))
	if !s.retired {
		s.g.queued.Add(-int64(n))
	}
	s.mu.Unlock()
}

// retire, once the session's commands no longer run (the gateway closed
// its connection, or dropped its queue after the client closed it),
// uncounts from Gateway.queued the bytes of its commands not answered:
// those that still run are uncounted from the session alone, those
// dropped (a stopped session's queue is dropped on several paths) are
// not counted for good. (Counted per command, a test's 20 connections
// closed with their SETs queued left 82 MB counted.) OnTraffic, which
// adds, runs on the connection's event loop as OnClose does; after the
// close nothing adds.
func (s *session) retire() {
	s.mu.Lock()
	if !s.retired {
		s.retired = true
		s.g.queued.Add(-s.queued.Load())
	}
	s.mu.Unlock()
}

// answered counts n commands as answered (their answers are in the
// buffer about to be written).
func (s *session) answered(n int) {
	if n == 0 {
		return
	}
	s.pending.Add(-int64(n))
	for range n {
		s.lim.Done(0)
	}
}

// flush writes out (a buffer of its own: AsyncWrite keeps it) and, after
// QUIT or a protocol error, closes the connection once it is written.
func (s *session) flush(out []byte, close bool) {
	if len(out) == 0 && !close || s.closed.Load() {
		return
	}
	n := int64(len(out))
	s.unseen.Add(n)
	cb := func(c gnet.Conn, err error) error {
		if close {
			_ = c.Close()
			return nil
		}
		_ = connlimit.AfterWrite(c, err) // (the loop counts it: no longer unseen)
		s.unseen.Add(-n)
		return nil
	}
	if err := s.c.AsyncWrite(out, cb); err != nil && close {
		_ = s.c.Close()
	}
}

// one runs a single command and appends its answer; close: the
// connection must be closed once the answer is written.
func (s *session) one(cmd command, out []byte) ([]byte, bool) {
	defer s.answered(1)
	if cmd.proterr != "" {
		s.g.observe("(protocol)", 0, Error(cmd.proterr))
		return redcon.AppendError(out, cmd.proterr), true
	}
	if crossProtocol(cmd.args[0]) {
		// An HTTP request sent to the RESP port (a web page's form
		// posting across protocols, say) would run its body's lines as
		// inline commands: closed without an answer, as Redis does.
		s.g.log.Warn().Str("remote", s.remote.String()).Str("command", string(cmd.args[0])).
			Msg("possible cross-protocol attack: an HTTP request on the RESP port; connection closed")
		s.g.observe("(protocol)", 0, Error("cross-protocol"))
		return out, true
	}
	start := time.Now()
	s.lastAt.Store(start.UnixNano())
	if name := cmd.args[0]; s.multi || txCommand(name) != "" {
		if s.g.logins != nil && s.role() == auth.RoleNone {
			// Not logged in: MULTI, EXEC and DISCARD are refused as any
			// command is (a MULTI answered as a transaction's refusal
			// left the client's AUTH refused "inside a transaction").
			s.lastCmd.Store(lastName(name))
			label := txCommand(name)
			if label == "" {
				_, label = lookup(name)
			}
			s.g.observe(label, time.Since(start), errNoAuth)
			return redcon.AppendError(out, errNoAuth.Error()), false
		}
		if out, err, ok := s.transaction(name, out); ok {
			s.publish()
			s.lastCmd.Store(lastName(name))
			label := txCommand(name)
			if label == "" {
				_, label = lookup(name) // (a name of the table, or "unknown": metrics' labels stay bounded)
			}
			s.g.observe(label, time.Since(start), err)
			return out, false
		}
	}
	spec, name := lookup(cmd.args[0])
	var err error
	before := len(out)
	switch {
	case spec == nil:
		err = unknownCommand(cmd.args)
	case !spec.arityOK(len(cmd.args)):
		err = wrongArity(spec.name)
	default:
		if err = s.allowed(spec); err != nil {
			break
		}
		ctx, cancel := context.WithTimeout(s.g.ctx, s.g.cfg.Timeout)
		out, err = spec.run(ctx, s, cmd.args, out)
		cancel()
		if spec.group == "connection" {
			s.publish() // (its name, login or protocol may have changed)
		}
	}
	s.lastCmd.Store(lastName(cmd.args[0]))
	if cut := (answerCut{}); errors.As(err, &cut) {
		s.quit.Store(true) // (nothing read after it runs)
		s.g.log.Warn().Str("remote", s.remote.String()).Str("command", name).Err(cut.err).
			Msg("command failed after part of its answer was written; connection closed")
		s.g.observe(name, time.Since(start), cut.err)
		return out, true
	}
	if err != nil {
		out = redcon.AppendError(out[:before], replyError(err, spec == nil || spec.writes()).Error())
	}
	s.g.observe(name, time.Since(start), err)
	closeAfter := s.closeAfter
	s.closeAfter = false
	return out, spec != nil && spec.name == "quit" || closeAfter
}

// txNames are the transaction commands.
var txNames = [...]string{"multi", "exec", "discard"}

// txCommand returns "multi", "exec" or "discard" for those commands, ""
// for any other.
func txCommand(name []byte) string {
	for _, tx := range txNames {
		if isCmd(name, tx) {
			return tx
		}
	}
	return ""
}

// lastName is the command name CLIENT LIST shows for name: the table's,
// a transaction command's, or cmdNull for one not served.
func lastName(name []byte) *string {
	for i := range txNames {
		if isCmd(name, txNames[i]) {
			return &txNames[i]
		}
	}
	if sp, _ := lookup(name); sp != nil {
		return &sp.name
	}
	return &cmdNull
}

// transaction answers MULTI, EXEC and DISCARD, and any command between
// them (ok: answered; err: the error answered). ftkv has no transactions:
// a MULTI's commands could not apply as one across shards. MULTI is
// refused, and so is every command after it up to EXEC or DISCARD. (Run
// one by one, a client's transaction was applied while the client was
// told it failed: go-redis's TxPipelined on a review.)
func (s *session) transaction(name, out []byte) (_ []byte, err error, ok bool) {
	switch {
	case isCmd(name, "multi"):
		err = errNoMulti
		if s.multi {
			err = Error("ERR MULTI calls can not be nested")
		}
		s.multi = true
	case isCmd(name, "exec"), isCmd(name, "discard"):
		if !s.multi {
			err = Error("ERR " + strings.ToUpper(string(name)) + " without MULTI")
			break
		}
		s.multi = false
		if isCmd(name, "discard") {
			return redcon.AppendOK(out), nil, true
		}
		err = Error("EXECABORT Transaction discarded because of previous errors.")
	case isCmd(name, "quit"), isCmd(name, "reset"):
		return out, nil, false // (RESET leaves the MULTI)
	default:
		err = errInMulti
	}
	return redcon.AppendError(out, err.Error()), err, true
}

// learnGet takes the size of the largest GET answer of a run into
// getEst: the largest seen, forgotten by halves as they shrink.
func (s *session) learnGet(answer int) { s.getEst = max(answer, s.getEst/2, 64) }

// crossProtocol reports whether name starts an HTTP request (POST, or a
// Host: header line), which no Redis command is.
func crossProtocol(name []byte) bool { return isCmd(name, "post") || isCmd(name, "host:") }

// runLen is the number of commands from q[0] that run as one batch: plain
// GETs and SETs of distinct keys (commands on one key keep their order),
// at most maxRun.
func (s *session) runLen(q []command) int {
	if !s.mayBatch() || s.multi {
		return 0 // each command is checked against the user's role, or refused (transaction)
	}
	var hashes [maxRun]uint64 // (keys are compared when their hashes are equal)
	n, held, gets := 0, 0, false
	for n < len(q) && n < maxRun {
		args := q[n].args
		if !batchable(args) {
			break
		}
		// A batch's values are held until their answers are written: its
		// GETs are bounded by what their answers may take (getCap).
		if len(args) == 2 {
			if held += s.getCap(); n > 0 && held > runBytes {
				break
			}
			gets = true
		} else if gets {
			// No SET after a GET: a GET over its cap goes back to the
			// queue with what follows it, which must not have run.
			break
		}
		key := args[1]
		h := maphash.Bytes(keySeed, key)
		dup := false
		for i := range n {
			if hashes[i] == h && bytes.Equal(q[i].args[1], key) {
				dup = true
				break
			}
		}
		if dup {
			break
		}
		hashes[n] = h
		n++
	}
	return n
}

var keySeed = maphash.MakeSeed()

// batchable: a plain GET or SET within the limits (anything else, an
// error included, runs on its own).
func batchable(args [][]byte) bool {
	switch len(args) {
	case 2:
		return isCmd(args[0], "get") && len(args[1]) <= maxKey
	case 3:
		return isCmd(args[0], "set") && len(args[1]) <= maxKey && len(args[2]) <= maxValue
	}
	return false
}

// batchOps appends the operations of q (plain GETs and SETs) to ops. The
// keys alias the commands' arguments, which are the gateway's own copies
// and never change (the client copies a key before it returns).
func batchOps(q []command, ops []client.BatchOp, getCap int) []client.BatchOp {
	for _, cmd := range q {
		key := cmd.args[1]
		op := client.BatchOp{Kind: client.BatchGet, Key: unsafe.String(unsafe.SliceData(key), len(key)), MaxValue: getCap}
		if len(cmd.args) == 3 {
			op.Kind, op.Value, op.MaxValue = client.BatchPut, cmd.args[2], 0
		}
		ops = append(ops, op)
	}
	return ops
}

// batch sends ops to the cluster as one pipeline (one write per server).
func (g *Gateway) batch(ops []client.BatchOp) error {
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.Timeout)
	defer cancel()
	return g.cfg.Store.Batch(ctx, ops)
}

// replies appends the answers to ops (a batch that took d and failed with
// err as a whole, if not nil), in order; large answers are written as
// they pile up.
//
// It stops at a GET whose value is over its cap (client.ErrTooLarge with
// MaxValue set), which and what follows it are not answered, and returns
// how many ops it answered; the estimate of a GET's answer is then at its
// most, so that GET runs alone next.
func (s *session) replies(ops []client.BatchOp, err error, d time.Duration, out []byte) ([]byte, int) {
	size, largest, gets := 0, 0, false
	for i := range ops {
		size += len(ops[i].Value) + 16 // "$<len>\r\n<value>\r\n", "+OK\r\n"
		if ops[i].Kind == client.BatchGet {
			largest, gets = max(largest, len(ops[i].Value)+16), true
		}
	}
	if gets {
		s.learnGet(largest)
	}
	if len(ops) > 0 { // (CLIENT LIST's last command)
		last := &specByLC["set"].name
		if ops[len(ops)-1].Kind == client.BatchGet {
			last = &specByLC["get"].name
		}
		s.lastCmd.Store(last)
		s.lastAt.Store(time.Now().UnixNano())
	}
	if out == nil {
		out = make([]byte, 0, min(size, flushAt))
	}
	n := 0 // answers in out not yet counted as answered
	for i := range ops {
		op := &ops[i]
		e := op.Err
		if e == nil && err != nil {
			e = err
		}
		if op.Kind == client.BatchGet && op.MaxValue > 0 && errors.Is(op.Err, client.ErrTooLarge) {
			// The next cap: smallFetch's (such a fetch never waits for
			// the budget), then the most.
			s.getEst = maxValue + 16
			if op.MaxValue < smallFetch-16 {
				s.getEst = smallFetch - 16
			}
			s.answered(n)
			return out, i
		}
		name := "get"
		if op.Kind == client.BatchPut {
			name = "set"
		}
		switch {
		case e != nil:
			out = redcon.AppendError(out, replyError(e, op.Kind != client.BatchGet).Error())
		case op.Kind == client.BatchPut:
			out = redcon.AppendOK(out)
		default:
			out = appendValue(out, op.Value, op.Found, s.proto)
		}
		s.g.observe(name, d, e)
		n++
		if len(out) >= flushAt {
			s.answered(n)
			n = 0
			s.flush(out, false)
			out = nil
		}
	}
	s.answered(n)
	return out, len(ops)
}

// part is one session's commands in a group batch.
type part struct {
	s *session
	q []command
}

// runGroup runs the commands of the sessions ss, handed over by col:
// every session whose commands are all plain GETs and SETs (the usual case
// under load, pipelined or not) goes into one batch for all of them, one
// write per server instead of one per session (on loopback a write costs
// the sender the receiver's work too); the others run on their own
// workers. Each session's answers are written in order; a session whose
// commands arrived meanwhile goes back to col for the next batch.
func (g *Gateway) runGroup(col *collector, ss []*session) {
	parts := make([]part, 0, len(ss))
	n := 0
	for _, s := range ss {
		q := s.take()
		switch {
		case q == nil:
		case s.full():
			s.park(q)
		case s.runLen(q) == len(q) && weight(s.batchCap(gets(q))) <= smallFetch:
			// (GETs of large values wait for the fetch budget on a
			// worker of their own, not holding the others.)
			parts = append(parts, part{s, q})
			n += len(q)
		default:
			g.spawn(func() { s.work(q) })
		}
	}
	if len(parts) == 0 {
		return
	}
	ops := make([]client.BatchOp, 0, n)
	for _, p := range parts {
		each, _ := p.s.batchCap(gets(p.q))
		ops = batchOps(p.q, ops, each)
	}
	start := time.Now()
	err := g.batch(ops)
	d := time.Since(start)
	for _, p := range parts {
		out, done := p.s.replies(ops[:len(p.q)], err, d, nil)
		p.s.flush(out, false)
		p.s.unqueue(p.q[:done])
		if done < len(p.q) {
			p.s.requeue(p.q[done:])
		}
		ops = ops[len(p.q):]
	}
	for _, p := range parts {
		if p.s.more() {
			col.requeue(p.s)
		}
	}
}

// weight is batchCap's all.
func weight(_, all int) int { return all }

// requeue puts q, not run, back at the head of the session's queue (it
// stays running: more then hands it over again).
func (s *session) requeue(q []command) {
	s.mu.Lock()
	s.queue = append(q[:len(q):len(q)], s.queue...)
	s.mu.Unlock()
}

// more reports whether commands arrived while the session's last ones
// ran (it stays running, to be handed over again); if not, the session
// is no longer running (a connection whose reading stopped at
// max_inflight is woken to read on).
func (s *session) more() bool {
	s.mu.Lock()
	if len(s.queue) > 0 && !s.stop.Load() {
		s.mu.Unlock()
		return true
	}
	s.queue = nil
	s.running = false
	wake := s.stalled
	s.stalled = false
	s.mu.Unlock()
	if wake && !s.closed.Load() {
		_ = s.c.Wake(nil)
	}
	return false
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
