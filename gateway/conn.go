package gateway

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/auth"
	"ftkv/internal/connlimit"
	"ftkv/internal/frameio"
)

// handler serves the RESP port's event loops: it only parses. Commands go
// to their connection's session, whose one worker goroutine at a time
// runs them in order and writes the answers with AsyncWrite, so no loop
// ever waits for the cluster.
type handler struct {
	gnet.BuiltinEventEngine
	g *Gateway

	mu   sync.Mutex
	cols map[gnet.EventLoop]*collector
}

// collector is loop's collector.
func (h *handler) collector(loop gnet.EventLoop) *collector {
	h.mu.Lock()
	defer h.mu.Unlock()
	col := h.cols[loop]
	if col == nil {
		if h.cols == nil {
			h.cols = make(map[gnet.EventLoop]*collector)
		}
		col = newCollector(h.g)
		h.cols[loop] = col
	}
	return col
}

// session is one RESP connection.
type session struct {
	g   *Gateway
	c   gnet.Conn
	id  int64
	col *collector // its event loop's

	// A command longer than one window (its event loop's): its input
	// so far (assemble), and how far it is read.
	big  []byte
	long readState

	pending atomic.Int64 // commands read, not answered
	queued  atomic.Int64 // their bytes (maxQueued; counted in Gateway.queued until retired)
	quit    atomic.Bool  // QUIT, a protocol error or closed: no more input is read
	closed  atomic.Bool  // no more answers are written
	stop    atomic.Bool  // closed by the gateway: its commands not run yet never run
	reading atomic.Bool  // the command running only reads (gone, once its client closed)

	mu      sync.Mutex
	retired bool // closed: its queued bytes left Gateway.queued (unqueue, retire)
	queue   []command
	running bool // a worker is running the queue
	stalled bool // parsing stopped at max_inflight with input left: wake when drained

	// The worker's (one at a time, handed over under mu).
	proto int  // 2, or 3 after HELLO 3
	multi bool // after a (refused) MULTI, until EXEC or DISCARD (transaction)
	name  string
	lib   [2]string // CLIENT SETINFO lib-name, lib-ver
	user  string    // logged in as (auth.go)
	// closeAfter: the connection is closed once the answer of the
	// command running is written (CLIENT KILL of itself).
	closeAfter bool

	remote net.Addr  // the client's address (logins are throttled by it)
	local  net.Addr  // the gateway's end (CLIENT INFO's laddr)
	opened time.Time // CLIENT INFO's age
	fd     int       // its socket's (CLIENT INFO's fd; read on open: the connection may be gone)

	// What CLIENT LIST shows of it to other sessions: the worker's state
	// as of its last connection command, and its last command and when.
	meta     atomic.Pointer[clientMeta]
	lastCmd  atomic.Pointer[string] // a name of the table, txNames or cmdNull: never the client's bytes
	lastAt   atomic.Int64           // unix nanoseconds
	authRole atomic.Int32           // auth.Role: RoleNone until AUTH (with logins)

	// Output backpressure (park): the connection's limits, the answers
	// written that its loop has not counted yet, and while parked the
	// timer that looks again (with its back-off).
	lim      *connlimit.State
	unseen   atomic.Int64
	parkT    *time.Timer
	parkWait time.Duration
	// getEst is what a GET's answer may take, for runLen and the fetch
	// budget: the largest of the last batch's, or half the estimate
	// before. It starts small: GETs are then fetched with a cap
	// (capFloor), and a longer value is not sent; the estimate is then
	// at its most. (Started at 1 MiB, every new connection's first GETs
	// would wait for the fetch budget behind clients of large values.)
	getEst int
}

// command is one parsed command; its arguments are copies (gnet's buffer
// is reused after Discard). A protocol error travels as a command
// without arguments, answered in its turn.
type command struct {
	args    [][]byte
	proterr string
	size    int // bytes of its arguments (counted in session.queued)
}

// readOnly reports whether the command only reads keys (Redis's
// "readonly" flag): one a client that closed sent is skipped. Any other
// runs, writes and also what decides how those run (AUTH, MULTI, QUIT…).
func (c *command) readOnly() bool {
	if c.proterr != "" || len(c.args) == 0 {
		return false
	}
	sp, _ := lookup(c.args[0])
	return sp != nil && sp.readOnly()
}

// maxQueued bounds the bytes of the commands a session has read and not
// yet answered (beside max_inflight, which counts them): beyond it the
// connection's input waits in gnet's buffer, where the input budget
// counts it, as for max_inflight. One connection pipelining SETs of 1 MiB
// made the gateway hold up to max_inflight of them (an attack: 240-300 MB
// for 1,500).
const maxQueued = 8 << 20

// preAuthRequest is the largest command read from a client that has not
// logged in (with users): Redis's limit on an unauthenticated client's
// bulk strings.
const preAuthRequest = 16 << 10

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	st := connlimit.Of(c)
	if st == nil {
		return nil, gnet.Close
	}
	s := &session{g: h.g, c: c, id: h.g.nextID.Add(1), proto: 2, col: h.collector(c.EventLoop()), remote: c.RemoteAddr(), local: c.LocalAddr(), opened: time.Now(), fd: c.Fd(), lim: st, getEst: 64}
	s.publish()
	st.Data = s
	h.g.clients.Add(1)
	h.g.sessions.Store(s.id, s)
	return nil, gnet.None
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	if s := sessionOf(c); s != nil && !s.closed.Swap(true) {
		s.quit.Store(true)
		// A client that closed (or half-closed: gnet closes the whole
		// connection at the end of its input) still has the commands it
		// sent run, as Redis runs what it read; their answers go
		// nowhere. One the gateway closed (QUIT, a protocol error, a
		// limit, an eviction, its own stop: no error) runs nothing more.
		// Its commands stay counted in Gateway.queued until they ran,
		// so that clients sending and closing at once are held to the
		// budget as any others are.
		if err == nil {
			s.stop.Store(true)
			s.retire()
		}
		h.g.clients.Add(-1)
		h.g.sessions.Delete(s.id)
	}
	return gnet.None
}

func sessionOf(c gnet.Conn) *session {
	if st := connlimit.Of(c); st != nil {
		s, _ := st.Data.(*session)
		return s
	}
	return nil
}

// window is how much of the input one parse looks at (more when one
// command is longer): a connection holding megabytes of pipelined
// commands is not copied whole each time it is read a little further.
const window = 64 << 10

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	s := sessionOf(c)
	if s == nil {
		return gnet.Close
	}
	if s.quit.Load() {
		_, _ = c.Discard(c.InboundBuffered())
		if s.big != nil {
			s.big = nil
			connlimit.Taken(c, 0)
		}
		return gnet.None
	}
	var maxInflight int64
	var limit int
	var cmds []command
	var argsbuf [][]byte
	var o owner
	got := 0      // bytes of cmds
	full := false // the last room() said no
	// A connection with nothing in flight reads a command whatever the
	// others hold (nobody waits for others' work); one with commands in
	// flight reads more within its own bounds and, once it holds
	// connlimit.BudgetFloor, within inflight_budget, the bytes of every
	// connection's (its worker wakes it once its own drained). 40
	// connections each pipelining 6 MiB of SETs made the gateway hold 252
	// MB (a test). The floor spares the usual pipeline: clients that never
	// read park with their commands queued and hold the budget until
	// output_grace closes them, and every other pipelining client was
	// read one command at a time meanwhile (a review: redis-benchmark -P
	// 16 from 87k to 38k GETs/s).
	room := func() bool {
		n := s.pending.Load() + int64(len(cmds))
		// Before a client logs in (with users) one command is read at a
		// time, of at most preAuthRequest bytes, as Redis reads an
		// unauthenticated client: a stranger cannot queue commands nor
		// send 16 MiB (a review). The next is read once it was answered
		// (the worker wakes a stalled connection), with the role AUTH
		// gave: read after pending, which the worker lowers only after it
		// stored the role (judged once before, a SET read just after its
		// AUTH was answered met the smaller limit: a review).
		maxInflight, limit = int64(h.g.lim.MaxInflight), h.g.cfg.MaxRequest
		if h.g.logins != nil && s.role() == auth.RoleNone {
			maxInflight, limit = 1, min(limit, preAuthRequest)
		}
		mine := s.queued.Load() + int64(got)
		ok := n < maxInflight && (n == 0 || mine < maxQueued && (mine < connlimit.BudgetFloor || h.g.queued.Load()+int64(got) < h.g.lim.InflightBudget))
		full = !ok
		return ok
	}
	// allowed is the bytes of commands (cmdSize) the connection may
	// still queue by room()'s bounds: the commands of this read are
	// allocated for as many as the input left holds within it. (Allocated for all the input left
	// however few commands the budget let in, 1,000 connections
	// pipelining GETs made the gateway hold 400 MB for 64 MiB counted.)
	allowed := func() int {
		mine := s.queued.Load() + int64(got)
		a := maxQueued - mine
		if h.g.queued.Load()+int64(got) >= h.g.lim.InflightBudget {
			a = min(a, connlimit.BudgetFloor-mine)
		}
		return int(max(a, 0))
	}
	for room() {
		if len(s.big) > 0 {
			// A command longer than one window, taken out of gnet's
			// buffer as it arrives (assemble).
			cmd, complete := s.assemble(c, argsbuf[:0], limit)
			if !complete {
				break // (for more input)
			}
			if cmd.proterr != "" || len(cmd.args) > 0 {
				cmds = append(cmds, cmd)
				got += cmd.size
			}
			if cmd.proterr != "" || len(cmd.args) > 0 && crossProtocol(cmd.args[0]) {
				// (As below: nothing after it is read.)
				s.quit.Store(true)
				_, _ = c.Discard(c.InboundBuffered())
				break
			}
			continue
		}
		have := c.InboundBuffered()
		if have == 0 {
			break
		}
		buf, err := c.Peek(min(have, window))
		if err != nil {
			break
		}
		off := 0
		for off < len(buf) && room() {
			complete, args, left, err := readCommand(buf[off:], argsbuf[:0], limit)
			if err != nil {
				cmds = append(cmds, command{proterr: protocolError(err)})
				s.quit.Store(true)
				off = len(buf)
				break
			}
			if !complete {
				break
			}
			argsbuf = args
			next := len(buf) - len(left)
			if len(args) > 0 {
				// Room for as many more commands of this size as
				// the input holds (a pipeline's are alike), and
				// room() may let in.
				size := cmdSize(args, next-off)
				more := min(len(left)/(next-off), allowed()/size)
				if cmds == nil && more > 0 {
					cmds = make([]command, 0, 1+min(more, 1023))
				}
				cmds = append(cmds, command{args: o.own(args, more), size: size})
				got += cmds[len(cmds)-1].size
				if crossProtocol(args[0]) {
					// Nothing after it is read (its run closes the
					// connection): an HTTP request's body is no command.
					s.quit.Store(true)
					off = len(buf)
					break
				}
			}
			off = next
		}
		if off == 0 {
			// The first command is not complete in this window.
			if have > len(buf) && buf[0] == '*' {
				// Longer than the window: the window's bytes are
				// all its own, and it is assembled from here.
				s.big = make([]byte, len(buf), 2*len(buf))
				_, _ = c.Read(s.big)
				connlimit.Taken(c, len(s.big))
				continue
			}
			if have > len(buf) {
				// An inline command: Redis refuses one longer than
				// 64 KiB, read whole.
				if buf, err = c.Peek(min(have, limit+1)); err == nil {
					complete, args, left, perr := readCommand(buf, argsbuf[:0], limit)
					switch {
					case perr != nil:
						cmds = append(cmds, command{proterr: protocolError(perr)})
						s.quit.Store(true)
						off = len(buf)
					case complete:
						argsbuf = args
						off = len(buf) - len(left)
						if len(args) > 0 {
							cmds = append(cmds, command{args: o.own(args, 0), size: cmdSize(args, off)})
							got += cmds[len(cmds)-1].size
						}
					}
				}
			}
			if off == 0 {
				if have > limit {
					cmds = append(cmds, command{proterr: protocolError(overLimit(limit))})
					s.quit.Store(true)
					_, _ = c.Discard(have)
				}
				break
			}
		}
		_, _ = c.Discard(off)
		if s.quit.Load() {
			_, _ = c.Discard(c.InboundBuffered())
			break
		}
	}
	if afterParse != nil {
		afterParse(full)
	}
	if len(cmds) == 0 && c.InboundBuffered() == 0 {
		return gnet.None
	}
	for range cmds {
		connlimit.Begin(c, 0) // (bounded by maxQueued per connection)
	}
	s.pending.Add(int64(len(cmds)))
	s.mu.Lock()
	s.queued.Add(int64(got))
	if !s.retired {
		s.g.queued.Add(int64(got))
	}
	if len(s.queue) == 0 {
		s.queue = cmds
	} else {
		s.queue = append(s.queue, cmds...)
	}
	start := !s.running && len(s.queue) > 0
	if start {
		s.running = true
	}
	// Input left for want of room: the worker wakes the connection once it
	// drained (stalled); if it drained already (between the last room()
	// and here), nobody would: wake it now. (Judged again from the
	// counters here, such input sat unread until more came: a review.)
	wake := false
	if full && c.InboundBuffered() > 0 && !s.quit.Load() {
		connlimit.Hold(c) // the rest waits for room, not for its sender
		if s.running {
			s.stalled = true
		} else {
			wake = true
		}
	}
	s.mu.Unlock()
	if wake {
		_ = c.Wake(nil)
	}
	if start {
		s.col.add(s)
	}
	return gnet.None
}

// assemble moves the input of the long command begun in s.big out of
// c's buffer, never past its end (its parse's need: the input it takes
// at least), and returns it once it is complete (or its protocol error),
// with its arguments in s.big, then s's no more. Left in gnet's buffer,
// a command of 1 MiB grew it to 2 MiB, by copies, and the next
// command's first bytes behind it kept it so: 100 connections sending
// SETs of 1 MiB, never reading, held 364 MB of such buffers, and the
// gateway 0.9 GB. Here it costs its own size, at most twice while it
// grows, without the copy a command read from gnet's buffer is given.
func (s *session) assemble(c gnet.Conn, argsbuf [][]byte, limit int) (command, bool) {
	for {
		complete, args, _, err := readFrom(s.big, &s.long, argsbuf, limit)
		if err != nil || complete {
			cmd := command{size: cmdSize(args, len(s.big))}
			if err != nil {
				cmd = command{proterr: protocolError(err)}
			} else {
				cmd.args = append([][]byte(nil), args...) // (args is argsbuf)
			}
			s.big = nil
			s.long.reset()
			connlimit.Taken(c, 0)
			return cmd, true
		}
		n := min(c.InboundBuffered(), s.long.need-len(s.big))
		if n == 1 {
			// A line not ended yet: taken to its end (or a window's
			// worth of it), not a byte at a time, each a parse.
			if buf, err := c.Peek(min(c.InboundBuffered(), window)); err == nil {
				if nl := bytes.IndexByte(buf, '\n'); nl >= 0 {
					n = nl + 1
				} else {
					n = len(buf)
				}
			}
		}
		if n <= 0 {
			connlimit.Taken(c, len(s.big))
			return command{}, false
		}
		// (An open line is taken past need: grown only to need, the
		// buffer was too short for it, and an MSET of values of 200
		// and 100 KB panicked the gateway: a review.)
		s.big = frameio.ReadOn(c, s.big, n, s.long.need)
	}
}

// workerIdle is how long an idle worker goroutine waits for another
// job before it exits. timing: exception — a goroutine pool's
// housekeeping, unrelated to the failure timeout.
const workerIdle = 10 * time.Second

// spawn runs job on an idle worker goroutine, or a new one. Workers are
// reused: a new goroutine's stack grows on every command (the client
// library's calls are deep), which cost more than the commands themselves.
func (g *Gateway) spawn(job func()) {
	select {
	case g.jobs <- job:
	default:
		go g.worker(job)
	}
}

func (g *Gateway) worker(job func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		job()
		idle.Reset(workerIdle)
		select {
		case job = <-g.jobs:
		case <-idle.C:
			return
		case <-g.ctx.Done():
			return
		}
	}
}

// collector gathers the sessions of one event loop that have commands to
// run and hands them to group workers: a group worker takes every session
// waiting and runs their commands together (runGroup), then takes those
// that arrived meanwhile, until none is left. At most groupsPerLoop group
// workers run at a time, so the sessions that get commands while a batch
// is out wait for it and go together in the next one: under load the
// batches grow with it (fewer writes and reads per command, for the
// gateway and for the servers) instead of splitting into one per pass of
// the loop. A batch out for longer than stuckAfter (a shard failing over)
// does not hold the others back: another group worker starts, at once if
// commands arrive, else when the timer fires.
type collector struct {
	g   *Gateway
	job func() // col.run (one closure, not one per spawn)

	mu      sync.Mutex
	pending []*session // sessions waiting for a group worker
	spare   []*session // the last batch's slice, reused
	busy    int        // group workers running
	last    time.Time  // when the newest batch was started
	timer   *time.Timer
	armed   bool // timer is set to look at pending
}

// groupsPerLoop bounds the group workers of one event loop running at a
// time (more start when a batch is stuck, see stuckAfter).
const groupsPerLoop = 1

// stuckAfter is how long a batch may be out before the sessions waiting
// behind it get a group worker of their own. timing: exception — a
// scheduling bound far below the failure timeout (a batch held by a
// failover takes about one failure timeout), far above a round trip.
const stuckAfter = 5 * time.Millisecond

func newCollector(g *Gateway) *collector {
	col := &collector{g: g}
	col.job = col.run
	col.timer = time.AfterFunc(time.Hour, col.kick)
	col.timer.Stop()
	return col
}

// add queues s (running, with commands) for a group worker.
func (col *collector) add(s *session) {
	col.mu.Lock()
	col.pending = append(col.pending, s)
	start := col.startLocked()
	col.mu.Unlock()
	if start {
		col.g.spawn(col.job)
	}
}

// requeue queues s for the group worker calling it, which takes the
// pending sessions next.
func (col *collector) requeue(s *session) {
	col.mu.Lock()
	col.pending = append(col.pending, s)
	col.mu.Unlock()
}

// startLocked reports whether a new group worker must start for the
// pending sessions (counting it as busy), or arms the timer to ask again.
func (col *collector) startLocked() bool {
	if col.busy < groupsPerLoop {
		col.busy++
		return true
	}
	if now := time.Now(); now.Sub(col.last) >= stuckAfter {
		col.busy++
		col.last = now // (the new worker sets it again)
		return true
	}
	if !col.armed {
		col.armed = true
		col.timer.Reset(stuckAfter)
	}
	return false
}

// kick is the timer's: sessions still waiting behind a stuck batch get a
// group worker.
func (col *collector) kick() {
	col.mu.Lock()
	col.armed = false
	start := len(col.pending) > 0 && col.startLocked()
	col.mu.Unlock()
	if start {
		col.g.spawn(col.job)
	}
}

// run is a group worker: it runs the waiting sessions' commands, batch
// after batch, until none is waiting.
func (col *collector) run() {
	for {
		col.mu.Lock()
		ss := col.pending
		if len(ss) == 0 {
			col.busy--
			col.mu.Unlock()
			return
		}
		col.pending = col.spare[:0]
		col.spare = nil
		col.last = time.Now()
		col.mu.Unlock()
		col.g.runGroup(col, ss)
		clear(ss)
		col.mu.Lock()
		if col.spare == nil && cap(ss) <= 1024 {
			col.spare = ss[:0]
		}
		col.mu.Unlock()
	}
}

// protocolError is the answer to unparsable input, as Redis words it
// (redcon's errors already start with "Protocol error: ").
func protocolError(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "Protocol error: ") {
		return "ERR " + msg
	}
	return protocolPrefix + msg
}

type errProtocol string

func (e errProtocol) Error() string { return string(e) }

// owner copies commands' arguments out of gnet's buffer (they alias it,
// and it is reused after Discard): the commands of one read share a few
// allocations, sized for the input left, rather than two each.
type owner struct {
	bytes []byte
	args  [][]byte
}

// cmdSize is what a command read from input bytes of input holds: its
// arguments' copy and a slice header each (empty arguments cost their
// headers: a review counted 2.8 million in one request), and itself (a
// GET of a short key takes twice its input in all).
func cmdSize(args [][]byte, input int) int {
	return input + 24*len(args) + int(unsafe.Sizeof(command{}))
}

// afterParse, for tests, runs between reading a connection's commands and
// queueing them (full: reading stopped for want of room).
var afterParse func(full bool)

// own copies args, a command likely followed by more commands like it
// (their arguments are allocated with its own).
func (o *owner) own(args [][]byte, more int) [][]byte {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	if cap(o.bytes)-len(o.bytes) < n {
		o.bytes = make([]byte, 0, n+min(more*n, window))
	}
	if cap(o.args)-len(o.args) < len(args) {
		o.args = make([][]byte, 0, len(args)*(1+min(more, 256)))
	}
	first := len(o.args)
	for _, a := range args {
		at := len(o.bytes)
		o.bytes = append(o.bytes, a...)
		o.args = append(o.args, o.bytes[at:len(o.bytes):len(o.bytes)])
	}
	return o.args[first:len(o.args):len(o.args)]
}
