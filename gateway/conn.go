package gateway

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/tidwall/redcon"

	"ftkv/internal/connlimit"
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
		col = &collector{g: h.g, loop: loop}
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

	pending atomic.Int64 // commands read, not answered
	quit    atomic.Bool  // QUIT, a protocol error or closed: no more input is read
	closed  atomic.Bool

	mu      sync.Mutex
	queue   []command
	running bool // a worker is running the queue
	stalled bool // parsing stopped at max_inflight with input left: wake when drained

	// The worker's (one at a time, handed over under mu).
	proto int // 2, or 3 after HELLO 3
	name  string
	lib   [2]string // CLIENT SETINFO lib-name, lib-ver
	user  string    // logged in as (auth.go)

	remote   net.Addr     // the client's address (logins are throttled by it)
	authRole atomic.Int32 // auth.Role: RoleNone until AUTH (with logins)
}

// command is one parsed command; its arguments are copies (gnet's buffer
// is reused after Discard). A protocol error travels as a command
// without arguments, answered in its turn.
type command struct {
	args    [][]byte
	proterr string
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	st := connlimit.Of(c)
	if st == nil {
		return nil, gnet.Close
	}
	s := &session{g: h.g, c: c, id: h.g.nextID.Add(1), proto: 2, col: h.collector(c.EventLoop()), remote: c.RemoteAddr()}
	st.Data = s
	h.g.clients.Add(1)
	return nil, gnet.None
}

func (h *handler) OnClose(c gnet.Conn, _ error) gnet.Action {
	if s := sessionOf(c); s != nil && !s.closed.Swap(true) {
		s.quit.Store(true)
		h.g.clients.Add(-1)
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
		return gnet.None
	}
	maxInflight := int64(h.g.lim.MaxInflight)
	var cmds []command
	var argsbuf [][]byte
	for s.pending.Load()+int64(len(cmds)) < maxInflight {
		have := c.InboundBuffered()
		if have == 0 {
			break
		}
		buf, err := c.Peek(min(have, window))
		if err != nil {
			break
		}
		off := 0
		for off < len(buf) && s.pending.Load()+int64(len(cmds)) < maxInflight {
			complete, args, kind, left, err := redcon.ReadNextCommand(buf[off:], argsbuf[:0])
			if err == nil && kind == redcon.Tile38 {
				err = errProtocol("expected '*', got '$'")
			}
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
			off = len(buf) - len(left)
			if len(args) > 0 {
				cmds = append(cmds, command{args: own(args)})
			}
		}
		if off == 0 {
			// The first command is not complete in this window.
			if have > len(buf) {
				if buf, err = c.Peek(min(have, h.g.cfg.MaxRequest+1)); err == nil {
					if complete, args, _, left, perr := redcon.ReadNextCommand(buf, argsbuf[:0]); perr == nil && complete {
						argsbuf = args
						off = len(buf) - len(left)
						if len(args) > 0 {
							cmds = append(cmds, command{args: own(args)})
						}
					}
				}
			}
			if off == 0 {
				if have > h.g.cfg.MaxRequest {
					cmds = append(cmds, command{proterr: protocolPrefix + "request over the gateway's limit of " +
						itoa(int64(h.g.cfg.MaxRequest)) + " bytes"})
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
	if len(cmds) == 0 && c.InboundBuffered() == 0 {
		return gnet.None
	}
	for range cmds {
		connlimit.Begin(c)
	}
	s.pending.Add(int64(len(cmds)))
	s.mu.Lock()
	s.queue = append(s.queue, cmds...)
	start := !s.running && len(s.queue) > 0
	if start {
		s.running = true
	}
	if c.InboundBuffered() > 0 && !s.quit.Load() && s.pending.Load() >= maxInflight {
		s.stalled = true
	}
	s.mu.Unlock()
	if start {
		s.col.add(s)
	}
	return gnet.None
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

// collector gathers, on one event loop, the sessions that got commands
// during one pass over the loop's ready connections: a task queued on the
// loop runs after the pass's I/O events, and hands them over together
// (runGroup). Touched on its loop only.
type collector struct {
	g        *Gateway
	loop     gnet.EventLoop
	sessions []*session
	queued   bool
}

func (col *collector) add(s *session) {
	col.sessions = append(col.sessions, s)
	if !col.queued {
		col.queued = true
		if err := col.loop.Execute(context.Background(), col); err != nil {
			_ = col.Run(context.Background()) // (the engine is stopping)
		}
	}
}

// Run is the task queued on the loop.
func (col *collector) Run(context.Context) error {
	ss := col.sessions
	col.sessions, col.queued = nil, false
	if len(ss) > 0 {
		col.g.spawn(func() { col.g.runGroup(ss) })
	}
	return nil
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

// own copies a command's arguments (they alias gnet's buffer) into one
// allocation.
func own(args [][]byte) [][]byte {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(args))
	for i, a := range args {
		buf = append(buf, a...)
		out[i] = buf[len(buf)-len(a) : len(buf) : len(buf)]
	}
	return out
}
