package coord

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// maxRaftTerm is the highest Raft term a coordinator takes from a peer.
// A view's epoch and a SETCOORD carry the leader's term in 32 bits
// (nextEpochLocked): a term past them would be cut, and every new leader
// would look older than the last (an attack: two AppendEntries from a
// stray sender on a Raft port without TLS pushed the term past 2^32, and
// the servers refused every leader after it, so nothing failed over). A
// real group never gets near it (one election a millisecond for 24 days).
const maxRaftTerm = 1<<31 - 1

// maxRaftConns bounds the connections a coordinator's Raft port holds
// (its peers use a few each); beyond it the one silent the longest is
// closed (an attack: 21,900 idle connections took every descriptor of the
// leader, and each respawn then failed).
const maxRaftConns = 256

// Raft RPC types (hashicorp/raft's net_transport.go: the byte before
// each request).
const (
	rpcAppendEntries uint8 = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
)

// guardListener bounds the connections accepted on a Raft port: at the
// bound, the connection whose last byte came the longest ago (or that
// never sent one) is closed to make room.
type guardListener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[*guardConn]struct{}
}

func newGuardListener(ln net.Listener, max int) *guardListener {
	return &guardListener{Listener: ln, max: max, conns: make(map[*guardConn]struct{})}
}

// count is how many connections l holds.
func (l *guardListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func (l *guardListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &guardConn{Conn: nc, l: l}
	c.last.Store(time.Now().UnixNano())
	var evict *guardConn
	l.mu.Lock()
	if len(l.conns) >= l.max {
		for o := range l.conns {
			if evict == nil || o.older(evict) {
				evict = o
			}
		}
		delete(l.conns, evict)
	}
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	if evict != nil {
		evict.Conn.Close()
	}
	return c, nil
}

// guardConn is an accepted Raft connection: it records when it last
// delivered bytes.
type guardConn struct {
	net.Conn
	l     *guardListener
	last  atomic.Int64 // unix ns of the last read that returned bytes, or of the accept
	spoke atomic.Bool
	once  sync.Once
}

// older reports whether c is a better connection to close than o: one
// that never sent a byte before one that did, then the one silent longer.
func (c *guardConn) older(o *guardConn) bool {
	if cs, ps := c.spoke.Load(), o.spoke.Load(); cs != ps {
		return !cs
	}
	return c.last.Load() < o.last.Load()
}

func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
		c.spoke.Store(true)
	}
	return n, err
}

func (c *guardConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// termFilter is the stream layer of a Raft port without TLS (nothing
// authenticates a peer there: README, *Coordinator group*): it reads each
// request before Raft does and closes a connection whose request carries
// a term past maxRaftTerm.
type termFilter struct {
	*guardListener
	adv     net.Addr
	log     hclog.Logger
	lastLog atomic.Int64
	// key, when set, is the group secret's (raftauth.go): every
	// connection proves it, both ways, within hello.
	key   []byte
	hello time.Duration
}

func (s *termFilter) Addr() net.Addr { return s.adv }

func (s *termFilter) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	start := time.Now()
	nc, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil || s.key == nil {
		return nc, err
	}
	if err := dialHello(nc, s.key, start.Add(max(timeout, s.hello))); err != nil {
		nc.Close()
		if errors.Is(err, errGroupSecret) {
			s.warn("a Raft peer did not prove the group secret (is group_secret_file the same on every coordinator?); connection closed", "to", string(addr), "error", err.Error())
		}
		return nil, fmt.Errorf("raft peer %s: %w", addr, err)
	}
	return nc, nil
}

// warn logs msg at most once a second.
func (s *termFilter) warn(msg string, args ...any) {
	if now := time.Now().UnixNano(); now-s.lastLog.Load() > int64(time.Second) {
		s.lastLog.Store(now)
		s.log.Warn(msg, args...)
	}
}

func (s *termFilter) Accept() (net.Conn, error) {
	nc, err := s.guardListener.Accept()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go s.filter(nc, pw)
	return &filteredConn{Conn: nc, pr: pr}, nil
}

// filteredConn is what Raft reads: the requests filter let through.
type filteredConn struct {
	net.Conn
	pr *io.PipeReader
}

func (c *filteredConn) Read(p []byte) (int, error) { return c.pr.Read(p) }

func (c *filteredConn) Close() error {
	c.pr.CloseWithError(net.ErrClosed)
	return c.Conn.Close()
}

// recReader reads exactly what the decoder asks for (it is an
// io.ByteScanner, as Raft's own bufio.Reader) and records it.
type recReader struct {
	br  *bufio.Reader
	rec []byte
}

func (r *recReader) Read(p []byte) (int, error) {
	n, err := r.br.Read(p)
	r.rec = append(r.rec, p[:n]...)
	return n, err
}

func (r *recReader) ReadByte() (byte, error) {
	b, err := r.br.ReadByte()
	if err == nil {
		r.rec = append(r.rec, b)
	}
	return b, err
}

func (r *recReader) UnreadByte() error {
	if err := r.br.UnreadByte(); err != nil {
		return err
	}
	r.rec = r.rec[:len(r.rec)-1]
	return nil
}

// filter passes nc's requests to pw, one whole request at a time, until
// one carries a term past maxRaftTerm, cannot be read, or nc ends.
func (s *termFilter) filter(nc net.Conn, pw *io.PipeWriter) {
	rr := &recReader{br: bufio.NewReaderSize(nc, 64<<10)}
	dec := codec.NewDecoder(rr, &codec.MsgpackHandle{})
	err := func() error {
		if s.key != nil {
			if err := acceptHello(nc, rr.br, s.key, time.Now().Add(s.hello)); err != nil {
				s.warn("refused a Raft connection that did not prove the group secret (a stray sender on the Raft port, or group_secret_file differs between coordinators)",
					"from", nc.RemoteAddr().String(), "error", err.Error())
				return net.ErrClosed
			}
		}
		for {
			rr.rec = rr.rec[:0]
			typ, err := rr.ReadByte()
			if err != nil {
				return err
			}
			var term uint64
			var snapshot int64 // InstallSnapshot: the bytes after the request
			switch typ {
			case rpcAppendEntries:
				var req raft.AppendEntriesRequest
				err, term = dec.Decode(&req), req.Term
			case rpcRequestVote:
				var req raft.RequestVoteRequest
				err, term = dec.Decode(&req), req.Term
			case rpcRequestPreVote:
				var req raft.RequestPreVoteRequest
				err, term = dec.Decode(&req), req.Term
			case rpcInstallSnapshot:
				var req raft.InstallSnapshotRequest
				err, term, snapshot = dec.Decode(&req), req.Term, req.Size
			case rpcTimeoutNow:
				var req raft.TimeoutNowRequest
				err = dec.Decode(&req)
			default:
				// Raft refuses it and closes: let it say so.
			}
			if err != nil {
				return err
			}
			if term > maxRaftTerm {
				s.warn("refused a Raft request with a term no group reaches (a stray sender on the Raft port?); connection closed",
					"from", nc.RemoteAddr().String(), "term", term)
				return net.ErrClosed
			}
			if _, err := pw.Write(rr.rec); err != nil {
				return err
			}
			if snapshot > 0 {
				if _, err := io.CopyN(pw, rr.br, snapshot); err != nil {
					return err
				}
			}
		}
	}()
	pw.CloseWithError(err)
	nc.Close()
}

// newRaftTransport is the Raft transport of a coordinator without TLS:
// raft.NewTCPTransportWithLogger's, with the connection bound and the
// term filter, and with key (nil: none) the group secret's exchange on
// every connection, within hello.
func newRaftTransport(bind string, adv net.Addr, maxPool int, timeout time.Duration, key []byte, hello time.Duration, log hclog.Logger) (*raft.NetworkTransport, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if adv == nil {
		adv = ln.Addr()
	}
	st := &termFilter{guardListener: newGuardListener(ln, maxRaftConns), adv: adv, log: log, key: key, hello: hello}
	return raft.NewNetworkTransportWithLogger(st, maxPool, timeout, log), nil
}
