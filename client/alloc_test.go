package client_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"ftkv/internal/testkit/testcluster"
)

// TestHotPathAllocs: on the steady path (a view, live connections) Put,
// Delete and AppendGet into a reused buffer allocate nothing — neither the
// caller's goroutine nor the connection's reader — against a real cluster.
// make test runs it without the race detector (which makes sync.Pool drop
// objects on purpose).
func TestHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a build without -race (make test runs this test so)")
	}
	c := testcluster.Start(t, testcluster.Options{N: 3, Plain: true})
	cl := c.Client()
	ctx := context.Background()
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("alloc:%d", i)
		if err := cl.Put(ctx, keys[i], []byte("warm")); err != nil { // dials every server
			t.Fatal(err)
		}
	}
	value := make([]byte, 100)
	buf := make([]byte, 0, 256)
	i := 0
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"Put", func() error { i++; return cl.Put(ctx, keys[i%len(keys)], value) }},
		{"AppendGet", func() error {
			i++
			v, err := cl.AppendGet(ctx, buf[:0], keys[i%len(keys)])
			if err == nil && len(v) != len(value) {
				err = fmt.Errorf("read %d bytes, want %d", len(v), len(value))
			}
			return err
		}},
		{"Delete+Put", func() error {
			i++
			if err := cl.Delete(ctx, keys[i%len(keys)]); err != nil {
				return err
			}
			return cl.Put(ctx, keys[i%len(keys)], value)
		}},
	} {
		var failed atomic.Value
		n := testing.AllocsPerRun(2000, func() {
			if err := tc.op(); err != nil {
				failed.Store(err)
			}
		})
		if err := failed.Load(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		t.Logf("%s: %.0f allocations per call", tc.name, n)
		if n > 0 {
			t.Errorf("%s allocates %.0f times per call on the steady path, want 0", tc.name, n)
		}
	}
}

// BenchmarkSharedClient: many goroutines (16 per GOMAXPROCS) share one
// client, each doing single Puts or Gets — the usual way a Go program uses
// a store client. Reports allocations per operation.
func BenchmarkSharedClient(b *testing.B) {
	c := testcluster.Start(b, testcluster.Options{N: 3, Plain: true, Args: []string{"-data-dir", "none"}})
	cl := c.Client()
	ctx := context.Background()
	value := make([]byte, 100)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:%d", i)
		if err := cl.Put(ctx, keys[i], value); err != nil {
			b.Fatal(err)
		}
	}
	for _, kind := range []string{"Put", "Get"} {
		b.Run(kind, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 0, 256)
				for pb.Next() {
					key := keys[next.Add(1)%int64(len(keys))]
					var err error
					if kind == "Put" {
						err = cl.Put(ctx, key, value)
					} else {
						_, err = cl.AppendGet(ctx, buf[:0], key)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
