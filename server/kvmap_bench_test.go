package server

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func BenchmarkTableGetRandom(b *testing.B) {
	for _, n := range []int{33_000, 333_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tb := newTable()
			keys := make([][]byte, n)
			val := make([]byte, 100)
			for i := range keys {
				keys[i] = []byte(fmt.Sprintf("key:%012d", rand.Int64N(1e12)))
				tb.merge(string(keys[i]), val, 1, false, false)
			}
			idx := make([]int, 1<<16)
			for i := range idx {
				idx[i] = rand.IntN(n)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tb.get(keys[idx[i&(1<<16-1)]])
			}
		})
	}
}
