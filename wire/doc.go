// Package wire is ftkv's binary protocol: one length-prefixed frame format for
// every link (client, replication, heartbeat, control, view). It is pure
// functions over bytes: append-style encoders and a decoder that reports
// "need more bytes" (n == 0, nil error) and refuses oversize lengths before
// allocating. It knows nothing of sockets, gnet or logging.
//
// The byte-by-byte layout is documented on Frame and in docs/DESIGN.md.
package wire
