package server

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/timing"
)

// TestNoSpinWhenEveryCoordinatorIsDown: a server whose coordinators are
// all gone (a group stopped while it ran on) keeps trying them in turn
// with a growing back-off. Rotating to the next coordinator used to
// reconnect at once, so it spun through them and its log filled a disk
// (72 GB in an afternoon).
func TestNoSpinWhenEveryCoordinatorIsDown(t *testing.T) {
	var tries atomic.Int64
	var addrs []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		addrs = append(addrs, l.Addr().String())
		go func() {
			for {
				nc, err := l.Accept()
				if err != nil {
					return
				}
				tries.Add(1)
				nc.Close() // a coordinator that is going away
			}
		}()
	}
	s, err := New(Config{ID: 0, Incarnation: 1, CoordAddr: strings.Join(addrs, ","), Secret: testSecret,
		DumpDir: t.TempDir(), Timing: timing.New(300 * time.Millisecond), Loops: 1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.Run(ctx)
	// Back-off from 30 ms doubling to 600 ms: about ten tries in 2 s.
	if n := tries.Load(); n > 40 {
		t.Fatalf("%d connection attempts to coordinators that all close at once in 2 s: the server spins", n)
	}
	t.Logf("%d connection attempts in 2 s", tries.Load())
}

// TestSilentCoordinatorLeftForTheNext: the coordinator a server
// heartbeats to takes its connection and answers nothing (frozen: the
// kernel still accepts). The server must try the next one of its group;
// it heartbeated to the frozen one until it resumed, and a respawned
// server that no new leader knew the address of was never heard.
func TestSilentCoordinatorLeftForTheNext(t *testing.T) {
	listen := func(onConn func(net.Conn)) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				nc, err := l.Accept()
				if err != nil {
					return
				}
				go onConn(nc)
			}
		}()
		return l.Addr().String()
	}
	frozen := listen(func(nc net.Conn) { _, _ = io.Copy(io.Discard, nc) })
	reached := make(chan struct{}, 1)
	next := listen(func(nc net.Conn) {
		select {
		case reached <- struct{}{}:
		default:
		}
		_, _ = io.Copy(io.Discard, nc)
	})
	tm := timing.New(100 * time.Millisecond)
	s, err := New(Config{ID: 0, Incarnation: 1, CoordAddr: frozen + "," + next, Secret: testSecret,
		DumpDir: t.TempDir(), Timing: tm, Loops: 1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-reached:
	case <-time.After(10 * tm.Handshake):
		t.Fatalf("the server never tried the next coordinator while the first answered nothing for %s", 10*tm.Handshake)
	}
}
