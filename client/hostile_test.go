package client

import (
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"ftkv/wire"
)

// fakeCoord accepts connections on loopback and answers every one with
// what answer writes (a hostile or broken server).
func fakeCoord(t *testing.T, answer func(nc net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				answer(nc)
			}()
		}
	}()
	return ln.Addr().String()
}

// A server cannot make the client allocate without bound: a length
// prefix beyond the largest frame fails the call at once, without the
// allocation, and so do answers that never end.
func TestHostileServer(t *testing.T) {
	cases := map[string]func(nc net.Conn){
		"4 GiB length prefix": func(nc net.Conn) {
			var hdr [wire.HeaderSize]byte
			binary.BigEndian.PutUint32(hdr[:4], 0xFFFFFFF0)
			nc.Write(hdr[:])
			time.Sleep(2 * time.Second)
		},
		"frame just over the limit": func(nc net.Conn) {
			var hdr [wire.HeaderSize]byte
			binary.BigEndian.PutUint32(hdr[:4], wire.MaxFrame+1)
			nc.Write(hdr[:])
			time.Sleep(2 * time.Second)
		},
		"garbage": func(nc net.Conn) {
			nc.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"))
			time.Sleep(2 * time.Second)
		},
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			addr := fakeCoord(t, answer)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			c, err := Dial(ctx, addr)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded against a hostile coordinator")
			}
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("the client allocated %d bytes for a hostile answer", grew)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("the client took %s to refuse it", took)
			}
			t.Logf("refused after %s: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

// TestConnectionRefusalNamed: a server that refuses a connection writes one
// frame with no request id (UNAVAILABLE "max clients reached" at its
// connection limit, BAD_REQUEST for a frame too large, UNAUTHENTICATED for
// a clear client on a TLS port) and closes. The client dropped that frame
// as an answer to nobody and reported "connection broken: EOF": the user
// at max clients was not told why.
func TestConnectionRefusalNamed(t *testing.T) {
	addr := fakeCoord(t, func(nc net.Conn) {
		nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpHello, Status: wire.StatusUnavailable, Value: []byte("max clients reached")}))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, addr)
	if err == nil || !strings.Contains(err.Error(), "max clients reached") {
		t.Fatalf("Dial to a server at its connection limit: %v, want its refusal \"max clients reached\"", err)
	}
	t.Logf("the user sees: %v", err)
}
