package connlimit

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/frameio"
	"ftkv/internal/testkit/heapuse"
	"ftkv/wire"
)

// putServer answers every frame with an empty one and counts the frames
// whose value is want.
type putServer struct {
	gnet.BuiltinEventEngine
	want []byte
	good atomic.Int64
}

func (h *putServer) OnTraffic(c gnet.Conn) gnet.Action {
	return Decode(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if bytes.Equal(f.Value, h.want) {
			h.good.Add(1)
		}
		return wire.Append(out, &wire.Frame{Op: f.Op, ID: f.ID}), gnet.None
	})
}

// TestLongFramesLeaveNoLargeBuffers: 100 clients each send a frame with a
// value of 1 MiB and the first bytes of another, then wait. Once each
// frame is answered (every value read exactly), the port holds what the
// clients sent and little more: no buffer sized for a frame decoded
// already. Before, a frame longer than one read stayed in gnet's buffer,
// which grew to twice its size by copies and stayed that large while the
// next frame's first bytes followed it: about 200 MB here.
func TestLongFramesLeaveNoLargeBuffers(t *testing.T) {
	val := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	h := &putServer{want: val}
	p := listen(t, h, Config{})
	const conns = 100
	frame := wire.Append(nil, &wire.Frame{Op: wire.OpPut, ID: 1, Key: []byte("k"), Value: val})
	req := append(append([]byte(nil), frame...), frame[:1000]...)
	base := heapuse.InUse()
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc := dial(t, p)
		ncs[i] = nc
		go func() { _, _ = nc.Write(req) }()
	}
	for i, nc := range ncs {
		_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := frameio.ReadFrame(bufio.NewReader(nc)); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	if n := h.good.Load(); n != conns {
		t.Fatalf("%d of %d values read as sent", n, conns)
	}
	grown := int64(heapuse.InUse()) - int64(base)
	t.Logf("heap in use grew by %d MB with %d connections each holding 1000 bytes of a frame", grown>>20, conns)
	if limit := int64(40 << 20); grown > limit {
		t.Errorf("the heap in use grew by %d MB, over %d MB: buffers sized for frames decoded already", grown>>20, limit>>20)
	}
	for _, nc := range ncs[:10] {
		// The frames gathered go on: each is completed and answered.
		if _, err := nc.Write(frame[1000:]); err != nil {
			t.Fatal(err)
		}
		if _, err := frameio.ReadFrame(bufio.NewReader(io.LimitReader(nc, 1<<10))); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.good.Load(); n != conns+10 {
		t.Fatalf("%d of %d values read as sent", n, conns+10)
	}
}
