package coord

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestRaftPortRefusesTermsPastTheEpoch: a coordinator's Raft port without
// TLS takes requests from anyone; one with a term past 32 bits (which a
// view's epoch cannot carry) must never reach Raft (an attack: two such
// AppendEntries to a follower, and no leader could ever adopt the servers
// again). Requests of real terms, and snapshots, pass unchanged.
func TestRaftPortRefusesTermsPastTheEpoch(t *testing.T) {
	log := hclog.NewNullLogger()
	srv, err := newRaftTransport("127.0.0.1:0", nil, 3, 2*time.Second, nil, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rec := recordRaft(srv)
	cli, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, 3, 2*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	to := srv.LocalAddr()
	appendTerm := func(term uint64) error {
		var resp raft.AppendEntriesResponse
		return cli.AppendEntries("0", to, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: term}, &resp)
	}
	seen := rec.terms

	if err := appendTerm(5); err != nil {
		t.Fatalf("AppendEntries of term 5: %v", err)
	}
	if err := appendTerm(1<<32 + 0xfffffff0); err == nil {
		t.Error("AppendEntries of term 2^32+0xfffffff0 answered")
	}
	var vote raft.RequestVoteResponse
	if err := cli.RequestVote("0", to, &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: 2 << 32}, &vote); err == nil {
		t.Error("RequestVote of term 2^33 answered")
	}
	if err := appendTerm(6); err != nil {
		t.Fatalf("AppendEntries of term 6 after the refusals: %v", err)
	}
	data := bytes.Repeat([]byte("snapshot"), 100_000)
	var is raft.InstallSnapshotResponse
	if err := cli.InstallSnapshot("0", to, &raft.InstallSnapshotRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax},
		SnapshotVersion: raft.SnapshotVersionMax, Term: 7, Size: int64(len(data))}, &is, bytes.NewReader(data)); err != nil || !is.Success {
		t.Fatalf("InstallSnapshot: %v, success %v", err, is.Success)
	}
	if err := appendTerm(8); err != nil {
		t.Fatalf("AppendEntries after a snapshot: %v", err)
	}
	got := seen()
	if want := []uint64{5, 6, 7, 8}; len(got) != len(want) || got[0] != 5 || got[1] != 6 || got[2] != 7 || got[3] != 8 {
		t.Fatalf("Raft received terms %v, want %v", got, want)
	}
	if snap := rec.snapshot(); !bytes.Equal(snap, data) {
		t.Fatalf("the snapshot arrived as %d bytes, want the %d sent", len(snap), len(data))
	}
}

// raftRecorder answers every request a transport's consumer gets and
// records its term (a TimeoutNow, which has none, as 1000) and the last
// snapshot's bytes.
type raftRecorder struct {
	mu   sync.Mutex
	seen []uint64
	snap []byte
}

func recordRaft(tr *raft.NetworkTransport) *raftRecorder {
	r := &raftRecorder{}
	note := func(term uint64) {
		r.mu.Lock()
		r.seen = append(r.seen, term)
		r.mu.Unlock()
	}
	go func() {
		for rpc := range tr.Consumer() {
			switch req := rpc.Command.(type) {
			case *raft.AppendEntriesRequest:
				note(req.Term)
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
			case *raft.RequestVoteRequest:
				note(req.Term)
				rpc.Respond(&raft.RequestVoteResponse{Term: req.Term}, nil)
			case *raft.TimeoutNowRequest:
				note(1000)
				rpc.Respond(&raft.TimeoutNowResponse{}, nil)
			case *raft.InstallSnapshotRequest:
				b, err := io.ReadAll(rpc.Reader)
				r.mu.Lock()
				r.snap = b
				r.mu.Unlock()
				note(req.Term)
				rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: err == nil}, err)
			}
		}
	}()
	return r
}

func (r *raftRecorder) terms() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seen...)
}

func (r *raftRecorder) snapshot() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snap
}

// TestRaftPortConnectionsBounded: a Raft port holds at most its bound of
// connections; a new one closes the one silent the longest, never one
// that spoke before one that did not (an attack: 21,900 idle connections
// took every descriptor of the leader).
func TestRaftPortConnectionsBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := newGuardListener(ln, 3)
	defer gl.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := gl.Accept()
			if err != nil {
				return
			}
			accepted <- c
			go io.Copy(io.Discard, c)
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		<-accepted
		return c
	}
	talker := dial()
	if _, err := talker.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// The byte is read before the silent ones arrive.
	for deadline := time.Now().Add(5 * time.Second); !gl.anySpoke(); {
		if time.Now().After(deadline) {
			t.Fatal("the talker's byte was not read in 5 s")
		}
		time.Sleep(time.Millisecond) // timing: exception — a poll
	}
	silent1, silent2 := dial(), dial()
	_ = dial() // the fourth: the oldest silent one goes
	closed := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF
	}
	if !closed(silent1) {
		t.Fatal("the connection silent the longest was not closed at the bound")
	}
	_ = dial() // the fifth: the other silent one
	if !closed(silent2) {
		t.Fatal("the second silent connection was not closed at the bound")
	}
	if _, err := talker.Write([]byte("y")); err != nil {
		t.Fatalf("the connection that spoke was closed: %v", err)
	}
	if gl.count() > 3 {
		t.Fatalf("%d connections held, bound 3", gl.count())
	}
}

// anySpoke reports whether a connection l holds has sent a byte.
func (l *guardListener) anySpoke() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		if c.spoke.Load() {
			return true
		}
	}
	return false
}
