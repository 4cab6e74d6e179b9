package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
)

// LoginCache remembers credentials that passed a check, as HMAC-SHA256 keys
// under a random key drawn at its creation (never a password), each
// with what the check returned (a user, a role). A pair is recognised
// from the address it logged in from always, and from any other address
// that has neither a failure nor an unrecognised attempt on its record
// at the Throttle: so a client's other hosts cost no second check (one
// bcrypt per user and process, a burst of reconnections after a respawn
// included), while a guesser, whose first wrong guess puts the address
// on record at once, is not let past the throttle by a password in use
// elsewhere. (Recognised whatever the address, 400 guesses over HTTP
// Basic from one address took 0.7 s and the right one was let in: a
// review. Recognised only from its own address, every client host cost
// a check of 0.2 s, two at a time, at each new server process.) Both
// sets hold at most maxCached entries. It is safe for concurrent use.
type LoginCache[T any] struct {
	key      [32]byte
	throttle *Throttle

	mu   sync.Mutex
	any  map[[32]byte]T // by user and password
	from map[[32]byte]T // by address, user and password
}

// NewLoginCache returns an empty set whose other-address hits th vets.
func NewLoginCache[T any](th *Throttle) *LoginCache[T] {
	l := &LoginCache[T]{throttle: th, any: map[[32]byte]T{}, from: map[[32]byte]T{}}
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
// are recognised from ip (see LoginCache). An attempt not recognised is put
// on ip's record before it returns: until the record is clean again, no
// attempt from ip is recognised by another address's login.
func (l *LoginCache[T]) Lookup(ip string, user, password []byte) (T, bool) {
	own := l.Key(ip, user, password)
	l.mu.Lock()
	v, ok := l.from[own]
	l.mu.Unlock()
	if ok {
		return v, true
	}
	if l.throttle.Clean(ip) {
		l.mu.Lock()
		v, ok = l.any[l.Key("", user, password)]
		if ok {
			put(l.from, own, v)
		}
		l.mu.Unlock()
		if ok {
			return v, true
		}
	}
	l.throttle.Unrecognised(ip)
	return v, false
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
