// Package hashring places keys on ftkv's ring of N servers:
// shard = xxh3(key) % N, server i is the primary of shard i and the
// secondary of its predecessor's shard (i-1+N) % N.
//
// The placement is part of the on-disk and on-wire contract: golden vectors
// in the tests make sure it never changes silently.
package hashring

import "github.com/zeebo/xxh3"

// Ring is a ring of N shards.
type Ring struct{ n int }

// New returns a ring of n shards; n must be positive.
func New(n int) Ring {
	if n <= 0 {
		panic("hashring: n must be positive")
	}
	return Ring{n: n}
}

// N is the number of shards.
func (r Ring) N() int { return r.n }

// Shard returns the shard of key.
func (r Ring) Shard(key string) int { return int(xxh3.HashString(key) % uint64(r.n)) }

// ShardBytes is Shard for a byte-slice key (same result, no allocation).
func (r Ring) ShardBytes(key []byte) int { return int(xxh3.Hash(key) % uint64(r.n)) }

// Primary returns the server that is primary for shard s in the initial view.
func (r Ring) Primary(s int) int { return s }

// Secondary returns the server that holds the copy of shard s: its successor.
func (r Ring) Secondary(s int) int { return (s + 1) % r.n }

// Predecessor returns the server whose shard server i holds as secondary.
func (r Ring) Predecessor(i int) int { return (i - 1 + r.n) % r.n }
