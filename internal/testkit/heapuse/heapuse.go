// Package heapuse measures the heap a test's process holds.
package heapuse

import "runtime"

// InUse is the heap in use once the garbage is collected (twice: a
// sync.Pool is emptied only in two collections), in bytes.
func InUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
