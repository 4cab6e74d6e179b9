package coord

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"ftkv/limits"
)

// DefaultDataDir is where servers keep their write-ahead logs and
// snapshots unless a data_dir line or -data-dir says otherwise: under the
// coordinator's working directory (on ssh hosts, under remote_dir).
const DefaultDataDir = "ftkv-data"

// NoDataDir as data_dir turns the logs off: the servers keep their tables
// in memory only, and a restart of the whole cluster starts empty.
const NoDataDir = "none"

// Storage says where and how servers log their writes ("data_dir",
// "fsync", "fsync_secondary" and "snapshot_bytes" lines; the coordinator's
// flags override them). Zero values mean the documented defaults.
type Storage struct {
	DataDir string // data_dir: DefaultDataDir, NoDataDir or a directory
	Fsync   string // fsync: always (default), everysec or no
	// FsyncSecondary (fsync_secondary yes): with fsync always, a secondary
	// acknowledges a write only once its own log synced it ("" = no).
	FsyncSecondary string
	// SnapshotBytes (snapshot_bytes): snapshot once the log holds this
	// many bytes (0 = the server's default, 64 MiB; negative = never).
	SnapshotBytes int64
}

// set applies one storage line or flag; ok is false for another name.
func (s *Storage) set(name, val string) (ok bool, err error) {
	switch name {
	case "data_dir":
		if val == "" {
			return true, fmt.Errorf("data_dir must name a directory (or %q for no log)", NoDataDir)
		}
		s.DataDir = val
	case "fsync":
		switch val {
		case "always", "everysec", "no":
			s.Fsync = val
		default:
			return true, fmt.Errorf("fsync must be always, everysec or no, got %q", val)
		}
	case "fsync_secondary":
		switch val {
		case "yes", "true", "1":
			s.FsyncSecondary = "yes"
		case "no", "false", "0":
			s.FsyncSecondary = "no"
		default:
			return true, fmt.Errorf("fsync_secondary must be yes or no, got %q", val)
		}
	case "snapshot_bytes":
		v, err := ParseSnapshotBytes(val)
		if err != nil {
			return true, err
		}
		s.SnapshotBytes = v
	default:
		return false, nil
	}
	return true, nil
}

// ParseSnapshotBytes reads a snapshot_bytes value: a byte count with the
// client limits' suffixes (64mb, 1GiB; it took digits only while the
// limits took both) or a negative number for never.
func ParseSnapshotBytes(val string) (int64, error) {
	if strings.HasPrefix(strings.TrimSpace(val), "-") {
		if v, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64); err == nil {
			return v, nil
		}
	} else if v, err := limits.ParseBytes(val); err == nil {
		return v, nil
	}
	return 0, fmt.Errorf("snapshot_bytes must be a number of bytes such as 67108864, 64mb or 64MiB (negative: never), got %q", val)
}

// Validate checks settings given as flags (the file's are checked as
// they are parsed).
func (s Storage) Validate() error {
	for _, f := range []struct{ name, val string }{{"data_dir", s.DataDir}, {"fsync", s.Fsync}, {"fsync_secondary", s.FsyncSecondary}} {
		if f.val == "" {
			continue
		}
		var t Storage
		if _, err := t.set(f.name, f.val); err != nil {
			return fmt.Errorf("-%s: %w", strings.ReplaceAll(f.name, "_", "-"), err)
		}
	}
	if strings.ContainsAny(s.DataDir, "'\"`$;&|<>\\") {
		return fmt.Errorf("-data-dir %q contains characters not allowed in a path", s.DataDir)
	}
	return nil
}

// override returns s with every setting of flags that is set.
func (s Storage) override(flags Storage) Storage {
	if flags.DataDir != "" {
		s.DataDir = flags.DataDir
	}
	if flags.Fsync != "" {
		s.Fsync = flags.Fsync
	}
	if flags.FsyncSecondary != "" {
		s.FsyncSecondary = flags.FsyncSecondary
	}
	if flags.SnapshotBytes != 0 {
		s.SnapshotBytes = flags.SnapshotBytes
	}
	if s.DataDir == "" {
		s.DataDir = DefaultDataDir
	}
	if s.Fsync == "" {
		s.Fsync = "always"
	}
	return s
}

// checkLocal refuses a data directory of a local server (ids, running in
// home) that exists and is not a directory, or that cannot be written
// (a read-only file system): each server exited at start-up, five times
// over, and the coordinator with status 1 and a line guessing why.
func (s Storage) checkLocal(home string, ids []int) error {
	if s.DataDir == NoDataDir || len(ids) == 0 {
		return nil
	}
	paths := []string{s.DataDir}
	for _, id := range ids {
		paths = append(paths, s.ServerDir(id))
	}
	for _, p := range paths {
		at := p
		if !filepath.IsAbs(p) && home != "" {
			at = filepath.Join(home, p)
		}
		fi, err := os.Stat(at)
		if err == nil && !fi.IsDir() || errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("%s is not a directory", p)
		}
		// The directory, or the nearest one above it that exists (the
		// server makes the rest), must take writes.
		for d := at; ; d = filepath.Dir(d) {
			if _, err := os.Stat(d); err != nil && filepath.Dir(d) != d {
				continue
			}
			if err := unix.Access(d, unix.W_OK); err != nil {
				return fmt.Errorf("%s cannot be written (%s: %v)", p, d, err)
			}
			break
		}
	}
	return nil
}

// ServerDir is server id's data directory ("" without logs): relative
// paths are relative to the server's working directory.
func (s Storage) ServerDir(id int) string {
	if s.DataDir == NoDataDir || s.DataDir == "" {
		return ""
	}
	return filepath.Join(s.DataDir, fmt.Sprintf("server_%d", id))
}

// Args are the server flags that carry s for server id.
func (s Storage) Args(id int) []string {
	dir := s.ServerDir(id)
	if dir == "" {
		return nil
	}
	args := []string{"-data-dir", dir, "-fsync", s.Fsync}
	if s.FsyncSecondary == "yes" {
		args = append(args, "-fsync-secondary")
	}
	if s.SnapshotBytes != 0 {
		args = append(args, "-snapshot-bytes", strconv.FormatInt(s.SnapshotBytes, 10))
	}
	return args
}
