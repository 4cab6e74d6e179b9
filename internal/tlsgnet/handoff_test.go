package tlsgnet

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/tlsconf"
)

// collector is a client-side inner handler: it passes every whole frame
// it reads to got, and checks its context survived the handoff.
type collector struct {
	gnet.BuiltinEventEngine
	got chan string
}

// send never blocks the loop (a failed test stops reading).
func (h *collector) send(s string) {
	select {
	case h.got <- s:
	default:
	}
}

type mine struct{ name string }

func (h *collector) OnTraffic(c gnet.Conn) gnet.Action {
	m, ok := c.Context().(*mine)
	if !ok || m.name != "link" {
		h.send(fmt.Sprintf("context %#v", c.Context()))
		return gnet.Close
	}
	for {
		hdr, err := c.Peek(hdrLen)
		if err != nil {
			return gnet.None
		}
		n := int(binary.BigEndian.Uint32(hdr)) + 4
		b, err := c.Next(n)
		if err != nil {
			return gnet.None
		}
		h.send(string(b[hdrLen:]))
	}
}

// A link dialled with net, handshaken and used in blocking mode, then
// registered with an engine: the session carries on on the event loop,
// including an answer the peer sent before the registration.
func TestHandoffMovesAnEstablishedSessionIntoAnEventLoop(t *testing.T) {
	p := getPKI(t)
	peer := startServer(t, &echo{t: t}, serverCfg(t, true))
	col := &collector{got: make(chan string, 1000)}
	local := startServer(t, col, p.server.Server(true, tlsconf.RoleClient))

	nc, err := net.Dial("tcp", peer.addr)
	if err != nil {
		t.Fatal(err)
	}
	ho := Client(nc, p.client.Client(tlsconf.RoleServer))
	_ = ho.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := ho.Write(frame('e', []byte("hello"))); err != nil {
		t.Fatal(err)
	}
	if k, b, err := readFrame(bufio.NewReaderSize(ho, hdrLen)); err != nil || k != 'e' || string(b) != "hello" {
		t.Fatalf("blocking exchange: %c %q %v", k, b, err)
	}
	// An answer in flight while the connection changes hands.
	if _, err := ho.Write(frame('e', []byte("early"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_ = ho.SetDeadline(time.Time{})
	ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), ho.Context(&mine{"link"})), nc)
	resc, err := local.eng.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res := <-resc
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	gc := Of(res.Conn)
	if _, ok := ConnectionState(gc); !ok {
		t.Fatal("Of did not return the wrapped connection")
	}
	want := []string{"early"}
	for i := range 200 {
		s := fmt.Sprintf("after-%d", i)
		want = append(want, s)
		if err := gc.AsyncWrite(frame('e', []byte(s)), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range want {
		select {
		case got := <-col.got:
			if got != w {
				t.Fatalf("got %q, want %q", got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no answer %q", w)
		}
	}
}
