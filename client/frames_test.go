package client

import (
	"net"

	"ftkv/wire"
)

// readFrames reads request frames from nc until a read fails, a frame
// does not decode, or a callback returns false: each whole frame goes to frame (its slices are
// valid only during the call), and round, if not nil, runs after the
// frames of each read. It is the read loop of the tests' fake servers.
func readFrames(nc net.Conn, frame func(f wire.Frame) bool, round func() bool) {
	var buf []byte
	tmp := make([]byte, 64<<10)
	for {
		m, err := nc.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:m]...)
		for {
			f, used, err := wire.Decode(buf, 0)
			if err != nil {
				return // (garbage: a server closes the connection)
			}
			if used == 0 {
				break
			}
			if !frame(f) {
				return
			}
			buf = buf[used:]
		}
		buf = append(buf[:0:0], buf...) // (the rest, off the frames just handed out)
		if round != nil && !round() {
			return
		}
	}
}
