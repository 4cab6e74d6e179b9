package coord

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestRaftPortNeedsTheGroupSecret: with a group secret, a Raft port
// without TLS passes to Raft only what comes on connections that proved
// the secret: a coordinator with the same secret is heard (snapshots too);
// raft's own transport without it (a stray sender: it forced elections
// with TimeoutNow, and could append entries of its own at a higher term),
// one with another secret, and a connection that says nothing are closed
// before a byte reaches Raft.
func TestRaftPortNeedsTheGroupSecret(t *testing.T) {
	log := hclog.NewNullLogger()
	key := []byte("0123456789abcdef0123456789abcdef")
	srv, err := newRaftTransport("127.0.0.1:0", nil, 3, 2*time.Second, key, time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rec := recordRaft(srv)
	to := srv.LocalAddr()
	lo := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}
	appendTerm := func(tr *raft.NetworkTransport, term uint64) error {
		var resp raft.AppendEntriesResponse
		return tr.AppendEntries("0", to, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: term}, &resp)
	}

	peer, err := newRaftTransport("127.0.0.1:0", lo, 3, 2*time.Second, key, time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if err := appendTerm(peer, 5); err != nil {
		t.Fatalf("a peer with the secret: %v", err)
	}
	data := bytes.Repeat([]byte("snapshot"), 100_000)
	var is raft.InstallSnapshotResponse
	if err := peer.InstallSnapshot("0", to, &raft.InstallSnapshotRequest{RPCHeader: hdr, SnapshotVersion: raft.SnapshotVersionMax, Term: 6, Size: int64(len(data))},
		&is, bytes.NewReader(data)); err != nil || !is.Success {
		t.Fatalf("InstallSnapshot from a peer with the secret: %v, success %v", err, is.Success)
	}

	stray, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", lo, 3, 2*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer stray.Close()
	if err := appendTerm(stray, 7); err == nil {
		t.Error("AppendEntries from a sender without the secret answered")
	}
	var tn raft.TimeoutNowResponse
	if err := stray.TimeoutNow("0", to, &raft.TimeoutNowRequest{RPCHeader: hdr}, &tn); err == nil {
		t.Error("TimeoutNow from a sender without the secret answered")
	}
	other, err := newRaftTransport("127.0.0.1:0", lo, 3, 2*time.Second, []byte("another secret, another group..."), time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := appendTerm(other, 9); err == nil {
		t.Error("AppendEntries from a peer with another secret answered")
	}
	// A connection that says nothing is closed once the exchange's time
	// is up.
	nc, err := net.Dial("tcp", string(to))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a silent connection: %v, want it closed after the exchange's second", err)
	}

	if err := appendTerm(peer, 10); err != nil {
		t.Fatalf("the peer with the secret after the refusals: %v", err)
	}
	// (A TimeoutNow would show as 1000.)
	if terms, want := rec.terms(), []uint64{5, 6, 10}; len(terms) != len(want) || terms[0] != 5 || terms[1] != 6 || terms[2] != 10 {
		t.Fatalf("Raft received terms %v, want %v", terms, want)
	}
	if snap := rec.snapshot(); !bytes.Equal(snap, data) {
		t.Fatalf("the snapshot arrived as %d bytes, want the %d sent", len(snap), len(data))
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestGroupSecretFile: the file must hold at least 16 bytes (white space
// around them ignored); the key is the same for the same secret.
func TestGroupSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := loadGroupKey(write("short", "  too short \n")); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("a 9-byte secret: %v", err)
	}
	if _, err := loadGroupKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file: no error")
	}
	a, err := loadGroupKey(write("a", "s3cret-s3cret-s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := loadGroupKey(write("b", "s3cret-s3cret-s3cret"))
	c, _ := loadGroupKey(write("c", "s3cret-s3cret-s3creT"))
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Error("the key does not follow the secret")
	}
	// A file others may read is used, with a warning (a review: any mode
	// passed silently).
	if _, open := openToOthers(write("private", "s3cret-s3cret-s3cret")); open {
		t.Error("a 0600 file is taken for open to others")
	}
	loose := write("loose", "s3cret-s3cret-s3cret")
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	if mode, open := openToOthers(loose); !open || mode != 0o644 {
		t.Errorf("a 0644 file: open %v, mode %04o", open, mode)
	}
}
