package coord

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// The group secret (group_secret_file): without TLS, a coordinator's Raft
// port took requests from anyone who could reach it, and a stray sender
// could force elections (TimeoutNow) or, at a higher term, append entries
// of its own to the followers' logs: the cluster's state, its secret too.
// With a group secret every Raft connection starts with a challenge and
// response, each side proving it holds the secret (HMAC-SHA256 over both
// sides' fresh nonces, one direction's never valid for the other) before
// a byte reaches Raft. It authenticates; it does not encrypt (TLS does).
//
//	dialer   -> "FTKVRFT1" nonceD[32]
//	acceptor -> "FTKVRFT1" nonceA[32] HMAC(k, "accept" nonceD nonceA)
//	dialer   -> HMAC(k, "dial" nonceA nonceD)

const raftHelloMagic = "FTKVRFT1"

// minGroupSecret is the fewest bytes a group secret file holds.
const minGroupSecret = 16

// errGroupSecret: the other side did not prove the group secret.
var errGroupSecret = errors.New("the other side does not hold the group secret")

// loadGroupKey reads a group secret file (surrounding white space
// ignored) and returns the key derived from it.
func loadGroupKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("group_secret_file: %w", err)
	}
	s := bytes.TrimSpace(b)
	if len(s) < minGroupSecret {
		return nil, fmt.Errorf("group_secret_file %s holds %d bytes, at least %d are needed (head -c 32 /dev/urandom | base64 > %s)", path, len(s), minGroupSecret, path)
	}
	k := sha256.Sum256(append([]byte("ftkv coordinator group secret\x00"), s...))
	return k[:], nil
}

// openToOthers reports whether users other than the owner may read or
// write the file at path (a secret file should be 0600), and its mode.
func openToOthers(path string) (os.FileMode, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	return fi.Mode().Perm(), fi.Mode().Perm()&0o077 != 0
}

func raftMAC(key []byte, dir string, a, b []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(dir))
	m.Write(a)
	m.Write(b)
	return m.Sum(nil)
}

// dialHello is the dialing side of the exchange on nc, before deadline.
func dialHello(nc net.Conn, key []byte, deadline time.Time) error {
	_ = nc.SetDeadline(deadline)
	defer nc.SetDeadline(time.Time{})
	hello := make([]byte, 0, len(raftHelloMagic)+32)
	hello = append(hello, raftHelloMagic...)
	nd := make([]byte, 32)
	_, _ = rand.Read(nd)
	if _, err := nc.Write(append(hello, nd...)); err != nil {
		return err
	}
	in := make([]byte, len(raftHelloMagic)+64)
	if _, err := io.ReadFull(nc, in); err != nil {
		return fmt.Errorf("%w (no answer to the challenge: %v)", errGroupSecret, err)
	}
	na := in[len(raftHelloMagic) : len(raftHelloMagic)+32]
	if string(in[:len(raftHelloMagic)]) != raftHelloMagic || !hmac.Equal(in[len(raftHelloMagic)+32:], raftMAC(key, "accept", nd, na)) {
		return errGroupSecret
	}
	_, err := nc.Write(raftMAC(key, "dial", na, nd))
	return err
}

// acceptHello is the accepting side: it reads from r (nc's reader) and
// writes to nc, before deadline.
func acceptHello(nc net.Conn, r io.Reader, key []byte, deadline time.Time) error {
	_ = nc.SetDeadline(deadline)
	defer nc.SetDeadline(time.Time{})
	in := make([]byte, len(raftHelloMagic)+32)
	if _, err := io.ReadFull(r, in); err != nil {
		return err
	}
	if string(in[:len(raftHelloMagic)]) != raftHelloMagic {
		return errGroupSecret
	}
	nd := in[len(raftHelloMagic):]
	out := make([]byte, 0, len(raftHelloMagic)+64)
	out = append(out, raftHelloMagic...)
	na := make([]byte, 32)
	_, _ = rand.Read(na)
	out = append(out, na...)
	out = append(out, raftMAC(key, "accept", nd, na)...)
	if _, err := nc.Write(out); err != nil {
		return err
	}
	mac := make([]byte, 32)
	if _, err := io.ReadFull(r, mac); err != nil {
		return err
	}
	if !hmac.Equal(mac, raftMAC(key, "dial", na, nd)) {
		return errGroupSecret
	}
	return nil
}
