package server

import (
	"net"

	"github.com/panjf2000/gnet/v2"
)

// writeOnLoop writes b to c from c's event loop, outside c's own
// OnTraffic (an answer to a write committed later, a link's flush).
// gnet's Write does not check that c is still open, and once c is closed
// its descriptor number belongs to whatever this process opens next:
// another client's connection, a replication link, a log file. A plain
// gnet connection loses its context when it closes (on this loop), and a
// TLS one refuses writes once closed, so a closed c is never written to.
func writeOnLoop(c gnet.Conn, b []byte) error {
	if c.Context() == nil {
		return net.ErrClosed
	}
	_, err := c.Write(b) // gnet keeps a copy of what the socket does not take
	return err
}
