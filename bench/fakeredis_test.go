package bench

import (
	"ftkv/bench/resp"

	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeRedis answers PING, GET and SET from a map, speaking RESP over any
// net.Conn; replies to a pipelined burst go out in one write, as Redis does.
type fakeRedis struct {
	mu    sync.Mutex
	data  map[string]string
	cmds  int
	reply func(cmd []string) string // optional override; "" falls through
}

func newFakeRedis() *fakeRedis { return &fakeRedis{data: map[string]string{}} }

func (f *fakeRedis) serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for {
		m, err := c.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:m]...)
		var out []byte
		for {
			r, n, err := resp.ParseReply(buf)
			if err != nil {
				c.Write([]byte("-ERR Protocol error\r\n"))
				return
			}
			if n == 0 {
				break
			}
			cmd := make([]string, len(r.Elems))
			for i, e := range r.Elems {
				cmd[i] = string(e.Str)
			}
			buf = buf[n:]
			out = append(out, f.answer(cmd)...)
		}
		buf = append([]byte(nil), buf...)
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}
}

func (f *fakeRedis) answer(cmd []string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds++
	if f.reply != nil {
		if s := f.reply(cmd); s != "" {
			return s
		}
	}
	switch {
	case len(cmd) == 1 && strings.EqualFold(cmd[0], "PING"):
		return "+PONG\r\n"
	case len(cmd) == 3 && strings.EqualFold(cmd[0], "SET"):
		f.data[cmd[1]] = cmd[2]
		return "+OK\r\n"
	case len(cmd) == 2 && strings.EqualFold(cmd[0], "GET"):
		v, ok := f.data[cmd[1]]
		if !ok {
			return "$-1\r\n"
		}
		return "$" + strconv.Itoa(len(v)) + "\r\n" + v + "\r\n"
	}
	return "-ERR unknown command\r\n"
}

// listen serves f on a loopback port until the test ends.
func (f *fakeRedis) listen(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	var conns sync.Map
	t.Cleanup(func() {
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(c) }()
		}
	}()
	return ln.Addr().String()
}
