// Package netopt holds the TCP settings of ftkv's outbound links.
//
// A peer whose host vanished (power off, link down) sends no reset: a
// connection to it looks open forever and a request on it is never
// answered. TCP_USER_TIMEOUT bounds how long sent data may stay
// unacknowledged before the kernel drops the connection, and keep-alives
// probe idle ones. Acknowledgements come from the peer's kernel, not its
// process, so a busy or stopped peer is not taken for a dead host as long
// as its receive buffer has room; one that stays stopped with a full
// buffer for longer than the timeout loses the connection too (Linux
// counts a zero window against it since 5.11). Nothing depends on a link
// staying up: links reconnect and clients retry with the same sequence
// number.
package netopt

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// UserTimeout is how long sent data may go unacknowledged.
//
// timing: exception — this and the keep-alive periods below are kernel
// settings of every outbound link, the client's included (it has no
// failure timeout), and not derived from -t: failures are detected by
// heartbeats within the failure timeout; these only free a connection
// left hanging on a host that vanished.
const UserTimeout = 2 * time.Second

// Dialer returns a dialer with a connect timeout, keep-alives and
// TCP_USER_TIMEOUT set on every connection it opens.
func Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 3,
		},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(UserTimeout/time.Millisecond))
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}
