package server

import (
	"fmt"
	"testing"
	"time"

	"ftkv/wire"
)

// BenchmarkSeedEncode measures the sender's side of re-seeding: walking a
// table and packing it into SEED batches.
func BenchmarkSeedEncode(b *testing.B) {
	t := newTable()
	val := make([]byte, 100)
	const n = 300000
	for i := 0; i < n; i++ {
		t.set(fmt.Sprintf("key:%08d", i), val, uint64(i+1))
	}
	b.ResetTimer()
	start := time.Now()
	for it := 0; it < b.N; it++ {
		batch := make([]byte, 0, 320<<10)
		frames := 0
		for i := 0; i < stripes; i++ {
			t.eachIn(i, func(k string, v []byte, ver uint64) {
				batch = wire.AppendSeedEntryString(batch, k, v, ver)
				if len(batch) >= 256<<10 {
					frames++
					batch = make([]byte, 0, 320<<10)
				}
			})
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkSeedApply measures the receiver's side: applying SEED batches.
func BenchmarkSeedApply(b *testing.B) {
	val := make([]byte, 100)
	var frames [][]byte
	batch := []byte{}
	const n = 300000
	for i := 0; i < n; i++ {
		batch = wire.AppendSeedEntryString(batch, fmt.Sprintf("key:%08d", i), val, uint64(i+1))
		if len(batch) >= 256<<10 {
			frames = append(frames, batch)
			batch = nil
		}
	}
	frames = append(frames, batch)
	b.ResetTimer()
	start := time.Now()
	for it := 0; it < b.N; it++ {
		st := &secState{t: newTable(), seeding: true, dd: newDedup()}
		for i, f := range frames {
			fr := &wire.Frame{Op: wire.OpSeed, ID: uint64(i + 1), Value: f}
			if err := st.applySeed(fr); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "entries/s")
}
