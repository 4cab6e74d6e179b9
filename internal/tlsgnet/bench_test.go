package tlsgnet

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"
)

// BenchmarkEcho is the round-trip rate of 50 connections, each sending a
// 100-byte frame and waiting for its echo, over plain TCP and over TLS
// (the same gnet handler, wrapped). Compare ops/s of the two:
//
//	go test -run '^$' -bench Echo -benchtime 5s ./internal/tlsgnet
func BenchmarkEcho(b *testing.B) {
	for _, mode := range []string{"plain", "tls", "tls-async-only"} {
		b.Run(mode, func(b *testing.B) {
			directWrites = mode != "tls-async-only"
			defer func() { directWrites = true }()
			var cfg *tls.Config
			if mode != "plain" {
				cfg = serverCfg(b, false)
			}
			s := startServer(b, &echo{}, cfg)
			const conns = 50
			cs := make([]net.Conn, conns)
			for i := range cs {
				if cfg != nil {
					cs[i] = dial(b, s.addr, nil)
				} else {
					c, err := net.Dial("tcp", s.addr)
					if err != nil {
						b.Fatal(err)
					}
					cs[i] = c
				}
				defer cs[i].Close()
			}
			req := frame('e', make([]byte, 100))
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for i, c := range cs {
				n := b.N / conns
				if i < b.N%conns {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := bufio.NewReader(c)
					for range n {
						if _, err := c.Write(req); err != nil {
							b.Error(err)
							return
						}
						if _, _, err := readFrame(r); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
}
