package connlimit

import (
	"reflect"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// A paused connection stops being read. gnet v2.10 reads every readable
// socket whether or not its handler consumes the bytes, and grows the
// connection's buffer by copies; it has no call to stop (its maintainers
// declined one: gnet#712). So the loop's epoll interest in the socket is
// changed here: a paused connection keeps only EPOLLOUT (when gnet holds
// output for it), its client's kernel holds what it sends, and TCP's
// window slows it; resumed, it is polled for input again. gnet's own
// epoll changes (EPOLLIN back when its output drains) let through at most
// one read (its read buffer, 64 KiB) before the next OnTraffic stops it
// again. Everything else (the limits on unread input, the input budget)
// stays as it was: it bounds what was read before a pause.

// pollFD returns the epoll descriptor of gnet's event loop (-1: not
// found). gnet keeps it in an unexported field (eventloop.poller.fd),
// read here by reflection; a gnet whose layout differs leaves
// connections read while paused, as before (TestPausedConnectionNotRead
// fails then).
func pollFD(loop gnet.EventLoop) (fd int) {
	defer func() {
		if recover() != nil {
			fd = -1
		}
	}()
	v := reflect.ValueOf(loop)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return -1
	}
	p := v.Elem().FieldByName("poller")
	if !p.IsValid() || p.Kind() != reflect.Pointer || p.IsNil() {
		return -1
	}
	f := p.Elem().FieldByName("fd")
	if !f.IsValid() || f.Kind() != reflect.Int || f.Int() <= 0 {
		return -1
	}
	return int(f.Int())
}

// gnetOutbound is what gnet itself holds to write on c, whose EPOLLOUT
// gnet drops once it is written: under a TLS layer (tlsgnet) not what
// that layer has queued, or a level-triggered EPOLLOUT with nothing for
// gnet to write fired at every poll and kept the loop busy (a review:
// a whole CPU for an idle TLS client, TestIdleTLSConnectionLeavesItsLoopIdle).
func gnetOutbound(c gnet.Conn) int {
	if r, ok := c.(interface{ Raw() gnet.Conn }); ok {
		c = r.Raw()
	}
	return c.OutboundBuffered()
}

// stopReading takes the connection's input out of its loop's polling.
// On its loop.
func (st *State) stopReading() {
	if st.ls == nil || st.ls.epfd < 0 {
		return
	}
	var ev uint32
	if gnetOutbound(st.c) > 0 {
		ev = unix.EPOLLOUT
	}
	if st.setPoll(ev) {
		st.readsOff = true
	}
}

// startReading puts it back. On its loop.
func (st *State) startReading() {
	if !st.readsOff {
		return
	}
	st.readsOff = false
	ev := uint32(unix.EPOLLIN | unix.EPOLLPRI) // (gnet's ReadEvents)
	if gnetOutbound(st.c) > 0 {
		ev |= unix.EPOLLOUT
	}
	st.setPoll(ev)
}

func (st *State) setPoll(ev uint32) bool {
	fd := st.c.Fd()
	return unix.EpollCtl(st.ls.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: ev}) == nil
}
