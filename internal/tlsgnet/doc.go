// Package tlsgnet runs TLS on gnet v2 event loops.
//
// gnet has no TLS of its own (its maintainers decline it: panjf2000/gnet
// issues 16, 496 and 749). Wrap puts crypto/tls between gnet and an event
// handler without taking the connection out of the event loop: each
// connection gets a tls.Conn over an in-memory transport (pipeConn). The
// ciphertext gnet reads is handed to the tls.Conn, and the plaintext it
// yields is what the wrapped handler sees through Peek/Next/Discard; what
// the handler writes is encrypted and leaves through the real connection.
//
// The server handshake runs in a goroutine of its own (crypto/tls's
// handshake is a blocking state machine whose errors are final, so it
// cannot be paused and resumed on the loop): its reads wait until the
// loop feeds bytes. After the handshake everything happens on the loop:
// OnTraffic lets tls.Conn.Read pull ciphertext straight from gnet's
// inbound buffer; when that is empty the transport answers with a
// temporary net.Error, on which crypto/tls returns without failing the
// connection and keeps a partial record for the next round.
//
// Ciphertext leaves in the order tls.Conn produces it: from the loop with
// the connection's own Write when no asynchronous write is queued ahead of
// it, otherwise (and always from other goroutines) with AsyncWrite, so
// records stay in sequence whichever goroutine writes.
//
// A client that does not start with a TLS handshake record gets the
// answer of Options.OnPlaintext in clear (an error in the port's own
// protocol) and is closed.
//
// Connections dialled elsewhere (a replication link dialled with the net
// package and enrolled into an engine) use Handoff: the TLS handshake and
// any blocking exchange happen on the dialled connection, then the
// established session moves into the event loop with the connection.
package tlsgnet
