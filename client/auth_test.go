package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// addrConn is a net.Conn with a chosen remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func TestInPrivate(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 1}, false},
		{&net.UnixAddr{Name: "/tmp/s", Net: "unix"}, true},
	} {
		if got := inPrivate(addrConn{remote: tc.addr}); got != tc.want {
			t.Errorf("inPrivate(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if !inPrivate(tls.Client(addrConn{remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7)}}, &tls.Config{})) {
		t.Error("a TLS connection to another host is not private")
	}
}

// TestWithAuthNeverInClear: a client with credentials dialling a
// non-loopback address without TLS sends nothing and fails with ErrAuth.
func TestWithAuthNeverInClear(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	sent := make(chan int, 1)
	go func() {
		buf := make([]byte, 4096)
		_ = b.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := b.Read(buf)
		sent <- n
	}()
	dial := func(context.Context, string, string) (net.Conn, error) {
		return addrConn{Conn: a, remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 7000}}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, "10.0.0.7:7000", WithDialer(dial), WithAuth("ops", "s3cret-pw"))
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "not sending the password") || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("Dial = %v", err)
	}
	if n := <-sent; n != 0 {
		t.Errorf("%d bytes were sent in clear", n)
	}
}
