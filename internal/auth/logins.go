package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
)

// LoginCache remembers credentials that passed a check, as HMAC-SHA256
// keys under a random key drawn at its creation (never a password), each
// with what the check returned (a user, a role). Lookup recognises a
// pair from the address it logged in from: cheap, for an event loop, and
// before any throttle. Admitted recognises it whatever the address, and
// is asked only for an attempt the Throttle admitted, instead of a check
// of its own: a client's other hosts, or a burst of reconnections to a
// new server process, cost no check each, while every guess goes through
// the throttle, and a wrong one through a check, as without a cache.
// (Recognised whatever the address before the throttle, 400 guesses over
// HTTP Basic from one address took 0.7 s and the right one was let in:
// a review. Recognised only from its own address, every client host
// cost a bcrypt check of 0.2 s, two at a time, at each new process.)
// Both sets hold at most maxCached entries. It is safe for concurrent
// use.
type LoginCache[T any] struct {
	key [32]byte

	mu   sync.Mutex
	any  map[[32]byte]T // by user and password
	from map[[32]byte]T // by address, user and password
}

// NewLoginCache returns an empty set.
func NewLoginCache[T any]() *LoginCache[T] {
	l := &LoginCache[T]{any: map[[32]byte]T{}, from: map[[32]byte]T{}}
	if _, err := rand.Read(l.key[:]); err != nil {
		panic(fmt.Sprintf("auth: no randomness: %v", err))
	}
	return l
}

// Key is the HMAC of ip (empty: any address), user and password.
func (l *LoginCache[T]) Key(ip string, user, password []byte) [32]byte {
	m := hmac.New(sha256.New, l.key[:])
	var n [4]byte
	for _, b := range [][]byte{[]byte(ip), user} {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		m.Write(n[:])
		m.Write(b)
	}
	m.Write(password)
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// Lookup returns what the check of user and password returned if they
// logged in from ip before.
func (l *LoginCache[T]) Lookup(ip string, user, password []byte) (T, bool) {
	k := l.Key(ip, user, password)
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.from[k]
	return v, ok
}

// Admitted returns what the check of user and password returned if they
// logged in from any address, and then remembers them from ip too. Ask
// it only for an attempt the throttle admitted (Throttle.Reserve): it
// answers as a check would, without the check.
func (l *LoginCache[T]) Admitted(ip string, user, password []byte) (T, bool) {
	k := l.Key("", user, password)
	l.mu.Lock()
	v, ok := l.any[k]
	l.mu.Unlock()
	if ok {
		l.Remember(ip, user, password, v)
	}
	return v, ok
}

// Remember records that user and password from ip passed a check that
// returned v.
func (l *LoginCache[T]) Remember(ip string, user, password []byte, v T) {
	own, anyAddr := l.Key(ip, user, password), l.Key("", user, password)
	l.mu.Lock()
	put(l.from, own, v)
	put(l.any, anyAddr, v)
	l.mu.Unlock()
}

// put adds k to m, emptied first when full (a bound on memory: the
// clients it forgets log in again with a check).
func put[T any](m map[[32]byte]T, k [32]byte, v T) {
	if len(m) >= maxCached {
		clear(m)
	}
	m[k] = v
}
