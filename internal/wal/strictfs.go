package wal

import (
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// StrictMemFS is an in-memory FS for tests that keeps, per file, what was
// synced apart from what was only written: Crash drops everything not
// synced, as a power cut does. Injected errors make writes or syncs fail.
type StrictMemFS struct {
	mu                  sync.Mutex
	files               map[string]*memFile
	failWrite, failSync error
	syncs               int
	syncDelay           time.Duration
}

// SlowSyncs makes every later sync take d, as a disk's fsync does (an
// in-memory sync returns at once, and whether writers then share one
// depends only on the scheduler).
func (m *StrictMemFS) SlowSyncs(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.syncDelay = d
}

// Fail makes every later write return werr and every later sync serr (nil: succeed).
func (m *StrictMemFS) Fail(werr, serr error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failWrite, m.failSync = werr, serr
}

// Syncs counts the file syncs so far.
func (m *StrictMemFS) Syncs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncs
}

type memFile struct {
	data   []byte
	synced int // bytes of data that survive a crash
	linked bool
}

// NewStrictMemFS returns an empty StrictMemFS.
func NewStrictMemFS() *StrictMemFS { return &StrictMemFS{files: make(map[string]*memFile)} }

// Crash forgets every byte not synced (and files whose creation was not
// made durable by a SyncDir).
func (m *StrictMemFS) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for n, f := range m.files {
		if !f.linked {
			delete(m.files, n)
			continue
		}
		f.data = f.data[:f.synced]
	}
}

// Corrupt overwrites b at offset off of name (for tests of damaged logs).
func (m *StrictMemFS) Corrupt(name string, off int, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.files[name].data[off:], b)
}

// Set replaces name's content (synced).
func (m *StrictMemFS) Set(name string, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[name] = &memFile{data: append([]byte(nil), b...), synced: len(b), linked: true}
}

// MkdirAll implements FS (directories are implicit).
func (m *StrictMemFS) MkdirAll(string) error { return nil }

// Create implements FS.
func (m *StrictMemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := &memFile{}
	m.files[name] = f
	return &memHandle{fs: m, f: f}, nil
}

// ReadFile implements FS.
func (m *StrictMemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), f.data...), nil
}

// Truncate implements FS.
func (m *StrictMemFS) Truncate(name string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[name]
	if !ok {
		return fs.ErrNotExist
	}
	f.data = f.data[:size]
	f.synced = min(f.synced, int(size))
	return nil
}

// Remove implements FS.
func (m *StrictMemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, name)
	return nil
}

// Size implements FS.
func (m *StrictMemFS) Size(name string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[name]
	if !ok {
		return 0, fs.ErrNotExist
	}
	return int64(len(f.data)), nil
}

// List implements FS.
func (m *StrictMemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for n := range m.files {
		if path.Dir(n) == strings.TrimSuffix(dir, "/") {
			names = append(names, path.Base(n))
		}
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir implements FS: files created so far survive a crash.
func (m *StrictMemFS) SyncDir(string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.files {
		f.linked = true
	}
	return nil
}

// Sync implements FS.
func (m *StrictMemFS) Sync(name string) error {
	f, ok := m.file(name)
	if !ok {
		return fs.ErrNotExist
	}
	return (&memHandle{fs: m, f: f}).Sync()
}

func (m *StrictMemFS) file(name string) (*memFile, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[name]
	return f, ok
}

type memHandle struct {
	fs *StrictMemFS
	f  *memFile
}

func (h *memHandle) Write(b []byte) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.fs.failWrite != nil {
		return 0, h.fs.failWrite
	}
	h.f.data = append(h.f.data, b...)
	return len(b), nil
}

func (h *memHandle) Sync() error {
	h.fs.mu.Lock()
	d := h.fs.syncDelay
	h.fs.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.fs.failSync != nil {
		return h.fs.failSync
	}
	h.f.synced = len(h.f.data)
	h.fs.syncs++
	return nil
}

func (h *memHandle) Close() error { return nil }
