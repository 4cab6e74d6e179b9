package hostile

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"ftkv/wire"
)

// Config says where a probe aims and how hard it pushes. Zero fields mean
// the probe's default (see the package documentation).
type Config struct {
	// Coord is the coordinator's client address; the target server and its
	// ports are found from the coordinator's status. Either Coord or Server.
	Coord string
	// ServerID picks the target server when Coord is given.
	ServerID int
	// Server is a server's client address, used instead of Coord. Peer and
	// Ctl are its replication and control addresses (huge-length and
	// unauth-big skip the ports that are not known).
	Server, Peer, Ctl string

	Duration time.Duration // how long the probe pushes (10s; one-shot: 2m, a cap)
	Size     int           // value size in bytes (slow-reader, half-frames: 1 MiB)
	Fill     int           // half-frames: bytes of the frame sent (30, half a header)
	// Writes: slow-reader sends a PUT of its Size-byte value after each
	// GET, so that its input grows as fast as the answers it never reads.
	Writes  bool
	Conns   int   // connections (per port for huge-length and unauth-big)
	Window  int   // write-flood: requests unanswered per connection (4096)
	Clients int   // one-shot: clients (100000)
	Seed    int64 // random client ids and seqs (0: from the clock)
	// DialTimeout bounds every dial (2s).
	DialTimeout time.Duration
	// Logf, when set, receives a few progress lines.
	Logf func(format string, args ...any)
}

func (c Config) withDefaults(duration time.Duration, conns int) Config {
	if c.Duration <= 0 {
		c.Duration = duration
	}
	if c.Conns <= 0 {
		c.Conns = conns
	}
	if c.Size <= 0 {
		c.Size = wire.MaxValue
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano()
	}
	return c
}

func (c Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// Probe runs one hostile client pattern until its Duration passes, ctx
// ends or its work is done, and reports what happened.
type Probe func(ctx context.Context, cfg Config) (Result, error)

var probes = map[string]Probe{
	"slow-reader": SlowReader,
	"idle-conns":  IdleConns,
	"half-frames": HalfFrames,
	"huge-length": HugeLength,
	"unauth-big":  UnauthBig,
	"bad-seqs":    BadSeqs,
	"one-shot":    OneShot,
	"write-flood": WriteFlood,
}

// Names lists the probes in the order an operator would run them.
func Names() []string {
	return []string{"slow-reader", "idle-conns", "half-frames", "huge-length", "unauth-big", "bad-seqs", "one-shot", "write-flood"}
}

// Lookup returns the probe called name.
func Lookup(name string) (Probe, bool) {
	p, ok := probes[name]
	return p, ok
}

// Run runs the probe called name.
func Run(ctx context.Context, name string, cfg Config) (Result, error) {
	p, ok := probes[name]
	if !ok {
		return Result{}, fmt.Errorf("hostile: no probe %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return p(ctx, cfg)
}

// Result is what a probe did and what the server did to it.
type Result struct {
	Probe  string
	Target string // the address probed
	// Elapsed is the probe's running time.
	Elapsed time.Duration
	// Opened counts connections the probe opened; DialErrors the dials
	// that failed.
	Opened, DialErrors int
	// ClosedByServer counts connections the server closed (end of file or
	// reset seen) while the probe held them; MaxCloseAfter is the longest
	// time from the probe's last byte on such a connection to the close.
	ClosedByServer int
	MaxCloseAfter  time.Duration
	// Requests counts whole frames sent, Answers frames received.
	Requests, Answers int64
	// Sent and Received count bytes.
	Sent, Received int64
	// Statuses counts answers by status (by name).
	Statuses map[string]int64
	// Errors counts the errors seen, by kind.
	Errors map[string]int
	// RateFirst and RateLast are answers per second in the first and the
	// last whole second (probes that pipeline requests).
	RateFirst, RateLast float64
	// Notes are probe-specific figures, one per line.
	Notes []string
	// Parts are the per-port or per-mode results of a probe with several.
	Parts []Result
}

// String renders r for a terminal, one figure per line.
func (r Result) String() string {
	var b strings.Builder
	r.write(&b, "")
	return b.String()
}

func (r Result) write(b *strings.Builder, ind string) {
	fmt.Fprintf(b, "%s%s -> %s: %s\n", ind, r.Probe, r.Target, r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(b, "%s  connections: %d opened, %d dial errors, %d closed by the server", ind, r.Opened, r.DialErrors, r.ClosedByServer)
	if r.ClosedByServer > 0 {
		fmt.Fprintf(b, " (at most %s after the last byte)", r.MaxCloseAfter.Round(time.Millisecond))
	}
	b.WriteByte('\n')
	fmt.Fprintf(b, "%s  frames: %d sent, %d answered; bytes: %s sent, %s received\n", ind, r.Requests, r.Answers, Bytes(r.Sent), Bytes(r.Received))
	if r.RateFirst > 0 || r.RateLast > 0 {
		fmt.Fprintf(b, "%s  answers/s: %.0f in the first second, %.0f in the last\n", ind, r.RateFirst, r.RateLast)
	}
	if len(r.Statuses) > 0 {
		fmt.Fprintf(b, "%s  statuses: %s\n", ind, sortedCounts(r.Statuses))
	}
	if len(r.Errors) > 0 {
		m := make(map[string]int64, len(r.Errors))
		for k, v := range r.Errors {
			m[k] = int64(v)
		}
		fmt.Fprintf(b, "%s  errors: %s\n", ind, sortedCounts(m))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(b, "%s  %s\n", ind, n)
	}
	for _, p := range r.Parts {
		p.write(b, ind+"  ")
	}
}

func sortedCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// Bytes renders n with a binary unit.
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// tally gathers a Result from many goroutines.
type tally struct {
	mu  sync.Mutex
	r   Result
	per []int64 // answers per whole second since start
	t0  time.Time
}

func newTally(probe, target string) *tally {
	return &tally{r: Result{Probe: probe, Target: target, Statuses: map[string]int64{}, Errors: map[string]int{}}, t0: time.Now()}
}

func (t *tally) opened() { t.mu.Lock(); t.r.Opened++; t.mu.Unlock() }
func (t *tally) note(f string, a ...any) {
	t.mu.Lock()
	t.r.Notes = append(t.r.Notes, fmt.Sprintf(f, a...))
	t.mu.Unlock()
}
func (t *tally) sent(bytes, frames int64) {
	t.mu.Lock()
	t.r.Sent += bytes
	t.r.Requests += frames
	t.mu.Unlock()
}

func (t *tally) dialErr(err error) {
	t.mu.Lock()
	t.r.DialErrors++
	t.r.Errors["dial: "+errKind(err)]++
	t.mu.Unlock()
}

func (t *tally) err(err error) {
	t.mu.Lock()
	t.r.Errors[errKind(err)]++
	t.mu.Unlock()
}

func (t *tally) closed(after time.Duration) {
	t.mu.Lock()
	t.r.ClosedByServer++
	t.r.MaxCloseAfter = max(t.r.MaxCloseAfter, after)
	t.mu.Unlock()
}

func (t *tally) answer(f *wire.Frame, bytes int) {
	sec := int(time.Since(t.t0) / time.Second)
	t.mu.Lock()
	t.r.Answers++
	t.r.Received += int64(bytes)
	t.r.Statuses[f.Status.String()]++
	for len(t.per) <= sec {
		t.per = append(t.per, 0)
	}
	t.per[sec]++
	t.mu.Unlock()
}

func (t *tally) received(bytes int) { t.mu.Lock(); t.r.Received += int64(bytes); t.mu.Unlock() }

// result freezes the tally. Rates count whole seconds only.
func (t *tally) result() Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.r
	r.Elapsed = time.Since(t.t0)
	whole := int(r.Elapsed / time.Second)
	if n := min(whole, len(t.per)); n > 0 {
		r.RateFirst, r.RateLast = float64(t.per[0]), float64(t.per[n-1])
	}
	return r
}

// errKind names an error without its addresses, so equal failures count
// together.
func errKind(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, io.EOF):
		return "closed by the server (EOF)"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "context ended"
	case errors.As(err, &errno):
		return errno.Error()
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// serverClosed reports whether err means the server closed the connection.
func serverClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// ErrNoServer: the coordinator has no server of the id a probe aims at.
var ErrNoServer = errors.New("hostile: no such server")

// Target is the server a probe aims at.
type Target struct {
	ID                  int    // -1 when given by address
	PID                 int    // 0 when unknown (given by address)
	Addr, PeerAddr, Ctl string // client, replication and control addresses
	Epoch               uint64 // the view epoch when resolved
}

// statusDoc is the part of the coordinator's status document probes use.
type statusDoc struct {
	Epoch   uint64 `json:"epoch"`
	Servers []struct {
		ID       int    `json:"id"`
		Addr     string `json:"addr"`
		PeerAddr string `json:"peer_addr"`
		CtlAddr  string `json:"ctl_addr"`
		PID      int    `json:"pid"`
	} `json:"servers"`
}

// Resolve finds the target of cfg: the server given by address, or server
// ServerID of the coordinator's status.
func Resolve(ctx context.Context, cfg Config) (Target, error) {
	if cfg.Server != "" {
		return Target{ID: -1, Addr: cfg.Server, PeerAddr: cfg.Peer, Ctl: cfg.Ctl}, nil
	}
	if cfg.Coord == "" {
		return Target{}, errors.New("hostile: Config needs Coord or Server")
	}
	raw, err := StatusJSON(ctx, cfg.Coord)
	if err != nil {
		return Target{}, err
	}
	var st statusDoc
	if err := json.Unmarshal(raw, &st); err != nil {
		return Target{}, fmt.Errorf("hostile: coordinator %s: bad status: %w", cfg.Coord, err)
	}
	for _, s := range st.Servers {
		if s.ID == cfg.ServerID {
			return Target{ID: s.ID, PID: s.PID, Addr: s.Addr, PeerAddr: s.PeerAddr, Ctl: s.CtlAddr, Epoch: st.Epoch}, nil
		}
	}
	return Target{}, fmt.Errorf("%w: coordinator %s has no server %d", ErrNoServer, cfg.Coord, cfg.ServerID)
}

// StatusJSON asks the coordinator at addr for its status document (what
// `status --json` prints) and returns it unparsed.
func StatusJSON(ctx context.Context, addr string) ([]byte, error) {
	f, err := roundTrip(ctx, addr, &wire.Frame{Op: wire.OpStatus, ID: 1})
	if err != nil {
		return nil, fmt.Errorf("hostile: status from %s: %w", addr, err)
	}
	if f.Status != wire.StatusOK {
		return nil, fmt.Errorf("hostile: status from %s: %s %s", addr, f.Status, f.Value)
	}
	return f.Value, nil
}

// roundTrip sends one frame on a fresh connection and reads one answer.
func roundTrip(ctx context.Context, addr string, req *wire.Frame) (wire.Frame, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return wire.Frame{}, err
	}
	defer nc.Close()
	dl := time.Now().Add(10 * time.Second)
	if t, ok := ctx.Deadline(); ok && t.Before(dl) {
		dl = t
	}
	_ = nc.SetDeadline(dl)
	if _, err := nc.Write(wire.Append(nil, req)); err != nil {
		return wire.Frame{}, err
	}
	f, _, err := readFrame(bufio.NewReader(nc))
	return f, err
}

// readFrame reads one whole frame (refusing more than wire.MaxFrame) and
// returns it with its size on the wire. The frame's slices are its own.
func readFrame(r *bufio.Reader) (wire.Frame, int, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return wire.Frame{}, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > wire.MaxFrame || n < wire.HeaderSize-4 {
		return wire.Frame{}, 4, fmt.Errorf("hostile: answer frame of %d bytes", n)
	}
	buf := make([]byte, 4+int(n))
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return wire.Frame{}, 4, err
	}
	f, _, err := wire.Decode(buf, 0)
	return f, len(buf), err
}

// dial opens a TCP connection within cfg's dial timeout.
func dial(ctx context.Context, cfg Config, addr string) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: cfg.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return nc.(*net.TCPConn), nil
}

// peek reports, without blocking or consuming anything, whether the
// server has closed nc (end of file or reset) and whether it sent bytes.
func peek(nc *net.TCPConn) (closed, data bool) {
	rc, err := nc.SyscallConn()
	if err != nil {
		return true, false
	}
	var b [1]byte
	_ = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN:
		case err != nil:
			closed = true
		case n == 0:
			closed = true
		default:
			data = true
		}
	})
	return closed, data
}

// drainAnswer reads what the server sent on a connection it is closing (an
// error frame at most, then end of file) within d: it returns the answers
// and whether the connection was closed.
func drainAnswer(nc *net.TCPConn, d time.Duration, t *tally) (closed bool) {
	_ = nc.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(nc)
	for {
		f, n, err := readFrame(br)
		if err != nil {
			if n > 0 {
				t.received(n)
			}
			if !serverClosed(err) && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.err(err)
			}
			return serverClosed(err)
		}
		t.answer(&f, n)
	}
}

// findKey finds a key the server at addr is primary of, storing value
// under it, by trying keys prefix/0, prefix/1, ... until a PUT is
// answered OK.
func findKey(ctx context.Context, cfg Config, addr, prefix string, value []byte) (string, uint64, error) {
	nc, err := dial(ctx, cfg, addr)
	if err != nil {
		return "", 0, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	var last wire.Frame
	for i := 0; i < 1024; i++ {
		key := fmt.Sprintf("%s/%d", prefix, i)
		if _, err := nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpPut, ID: uint64(i + 1), Key: []byte(key), Value: value})); err != nil {
			return "", 0, err
		}
		f, _, err := readFrame(br)
		if err != nil {
			return "", 0, err
		}
		switch f.Status {
		case wire.StatusOK:
			return key, f.Epoch, nil
		case wire.StatusWrongServer:
			last = f
			continue
		default:
			return "", 0, fmt.Errorf("hostile: PUT %q on %s: %s %s", key, addr, f.Status, f.Value)
		}
	}
	return "", 0, fmt.Errorf("hostile: %s is primary of none of 1024 keys (last answer %s)", addr, last.Status)
}
