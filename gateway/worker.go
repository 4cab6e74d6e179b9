package gateway

import (
	"context"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/tidwall/redcon"

	"ftkv/client"
	"ftkv/internal/connlimit"
)

// flushAt: answers are written once this many bytes are built (an answer
// holds up to a 1 MiB value), and at the end of each run of commands.
const flushAt = 64 << 10

// maxRun bounds the GETs and SETs of one pipeline sent as one batch.
const maxRun = 256

// work runs the session's queue until it is empty; at most one worker
// runs per session, so commands run, and are answered, in order.
func (s *session) work() {
	var out []byte
	for {
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		if len(q) == 0 || s.closed.Load() {
			s.queue = nil
			s.running = false
			wake := s.stalled
			s.stalled = false
			s.mu.Unlock()
			if wake && !s.closed.Load() {
				_ = s.c.Wake(nil)
			}
			return
		}
		s.mu.Unlock()
		for i := 0; i < len(q); {
			if s.closed.Load() {
				break
			}
			n := s.runLen(q[i:])
			if n > 1 {
				out = s.batch(q[i:i+n], out)
			} else {
				var close bool
				out, close = s.one(q[i], out)
				if close {
					s.flush(out, true)
					out = nil
					s.mu.Lock()
					s.queue = nil
					s.mu.Unlock()
					break
				}
				n = 1
			}
			i += n
			if len(out) >= flushAt {
				s.flush(out, false)
				out = nil
			}
		}
		if len(out) > 0 {
			s.flush(out, false)
			out = nil
		}
	}
}

// answered counts n commands as answered (their answers are in the
// buffer about to be written).
func (s *session) answered(n int) {
	s.pending.Add(-int64(n))
	for range n {
		connlimit.Done(s.c)
	}
}

// flush writes out (a buffer of its own: AsyncWrite keeps it) and, after
// QUIT or a protocol error, closes the connection once it is written.
func (s *session) flush(out []byte, close bool) {
	if len(out) == 0 && !close {
		return
	}
	cb := connlimit.AfterWrite
	if close {
		cb = func(c gnet.Conn, err error) error {
			_ = c.Close()
			return nil
		}
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
	start := time.Now()
	spec, name := lookup(cmd.args[0])
	var err error
	before := len(out)
	switch {
	case spec == nil:
		err = unknownCommand(cmd.args)
	case !spec.arityOK(len(cmd.args)):
		err = wrongArity(spec.name)
	default:
		ctx, cancel := context.WithTimeout(s.g.ctx, s.g.cfg.Timeout)
		out, err = spec.run(ctx, s, cmd.args, out)
		cancel()
	}
	if err != nil {
		out = redcon.AppendError(out[:before], respError(err).Error())
	}
	s.g.observe(name, time.Since(start), err)
	return out, spec != nil && spec.name == "quit"
}

// runLen is the number of commands from q[0] that run as one batch: plain
// GETs and SETs of distinct keys (commands on one key keep their order),
// at most maxRun.
func (s *session) runLen(q []command) int {
	n := 0
	var seen map[string]struct{}
	for n < len(q) && n < maxRun {
		args := q[n].args
		if !batchable(args) {
			break
		}
		if n == 1 {
			seen = map[string]struct{}{string(q[0].args[1]): {}}
		}
		if n >= 1 {
			k := string(args[1])
			if _, dup := seen[k]; dup {
				break
			}
			seen[k] = struct{}{}
		}
		n++
	}
	return n
}

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

// batch runs GETs and SETs of distinct keys as one client.Batch (one
// round trip per server) and appends their answers in order.
func (s *session) batch(q []command, out []byte) []byte {
	start := time.Now()
	ops := make([]client.BatchOp, len(q))
	for i, cmd := range q {
		ops[i].Key = string(cmd.args[1])
		if len(cmd.args) == 3 {
			ops[i].Kind, ops[i].Value = client.BatchPut, cmd.args[2]
		} else {
			ops[i].Kind = client.BatchGet
		}
	}
	ctx, cancel := context.WithTimeout(s.g.ctx, s.g.cfg.Timeout)
	err := s.g.cfg.Store.Batch(ctx, ops)
	cancel()
	d := time.Since(start)
	for i := range ops {
		op := &ops[i]
		e := op.Err
		if e == nil && err != nil {
			e = err
		}
		name := "get"
		switch {
		case e != nil:
			out = redcon.AppendError(out, respError(e).Error())
		case op.Kind == client.BatchPut:
			name = "set"
			out = redcon.AppendOK(out)
		default:
			out = appendValue(out, op.Value, op.Found, s.proto)
		}
		if op.Kind == client.BatchPut {
			name = "set"
		}
		s.g.observe(name, d, e)
	}
	s.answered(len(q))
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
