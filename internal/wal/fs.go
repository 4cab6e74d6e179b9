package wal

import (
	"io"
	"os"
	"path/filepath"
)

// File is an open segment, written only at its end.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// FS is the file layer the log uses; tests substitute one that loses
// what was not synced (StrictMemFS) or fails on demand.
type FS interface {
	MkdirAll(dir string) error
	Create(name string) (File, error) // create empty (or truncate), for appending
	ReadFile(name string) ([]byte, error)
	Truncate(name string, size int64) error
	Remove(name string) error
	Size(name string) (int64, error)
	List(dir string) ([]string, error)
	SyncDir(dir string) error
}

// OSFS is the operating system's file system.
type OSFS struct{}

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// Create implements FS.
func (OSFS) Create(name string) (File, error) {
	return os.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
}

// ReadFile implements FS.
func (OSFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

// Truncate implements FS; the truncation is synced.
func (OSFS) Truncate(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Size implements FS.
func (OSFS) Size(name string) (int64, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// List implements FS: the names (not paths) in dir.
func (OSFS) List(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, nil
}

// SyncDir implements FS: it makes creations, renames and removals in dir durable.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
