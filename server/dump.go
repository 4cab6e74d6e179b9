package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"ftkv/internal/wal"
)

// DumpMagic opens every dump file.
const DumpMagic = "FTKVDUMP"

// Dump file format (integers big-endian), binary-safe:
//
//	8 bytes  "FTKVDUMP"
//	4 bytes  format version (1)
//	8 bytes  number of records R
//	R times: 4 bytes key length K, K bytes key, 4 bytes value length V, V bytes value
//
// Records are in no particular order.
const dumpVersion = 1

// writeDump writes the entries of tables to path atomically (temp file +
// rename), so a reader never sees a half-written dump.
func writeDump(path string, tables []*table) error {
	var total uint64
	for _, t := range tables {
		total += uint64(t.len())
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // (one an older version left keeps its mode through O_TRUNC)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, wal.FileMode)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var hdr [20]byte
	copy(hdr[:], DumpMagic)
	binary.BigEndian.PutUint32(hdr[8:], dumpVersion)
	// The count is patched after writing: entries may change while
	// dumping only if traffic is still flowing, which shutdown prevents.
	binary.BigEndian.PutUint64(hdr[12:], total)
	_, _ = w.Write(hdr[:])
	var n uint64
	var lb [4]byte
	for _, t := range tables {
		err = t.each(func(k string, v []byte, _ uint64) error {
			binary.BigEndian.PutUint32(lb[:], uint32(len(k)))
			_, _ = w.Write(lb[:])
			_, _ = w.WriteString(k)
			binary.BigEndian.PutUint32(lb[:], uint32(len(v)))
			_, _ = w.Write(lb[:])
			_, err := w.Write(v)
			n++
			return err
		})
		if err != nil {
			break
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil && n != total {
		binary.BigEndian.PutUint64(hdr[12:], n)
		_, err = f.WriteAt(hdr[12:20], 12)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// ReadDump reads a dump file written at shutdown into a map of key to value.
func ReadDump(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := make(map[string][]byte)
	err = ScanDump(f, func(k, v []byte) error {
		m[string(k)] = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return m, nil
}

// ErrBadDump reports a file that is not a valid dump.
var ErrBadDump = errors.New("not a valid ftkv dump")

// ScanDump calls fn for every record of the dump read from r. The slices
// passed to fn are only valid during the call.
func ScanDump(r io.Reader, fn func(key, value []byte) error) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var hdr [20]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("%w: short header", ErrBadDump)
	}
	if string(hdr[:8]) != DumpMagic {
		return fmt.Errorf("%w: bad magic", ErrBadDump)
	}
	if v := binary.BigEndian.Uint32(hdr[8:]); v != dumpVersion {
		return fmt.Errorf("%w: version %d", ErrBadDump, v)
	}
	count := binary.BigEndian.Uint64(hdr[12:])
	var lb [4]byte
	var k, v []byte
	for i := uint64(0); i < count; i++ {
		if _, err := io.ReadFull(br, lb[:]); err != nil {
			return fmt.Errorf("%w: record %d truncated", ErrBadDump, i)
		}
		kl := binary.BigEndian.Uint32(lb[:])
		if kl > 1<<24 {
			return fmt.Errorf("%w: record %d key length %d", ErrBadDump, i, kl)
		}
		k = grow(k, int(kl))
		if _, err := io.ReadFull(br, k); err != nil {
			return fmt.Errorf("%w: record %d truncated", ErrBadDump, i)
		}
		if _, err := io.ReadFull(br, lb[:]); err != nil {
			return fmt.Errorf("%w: record %d truncated", ErrBadDump, i)
		}
		vl := binary.BigEndian.Uint32(lb[:])
		if vl > 1<<28 {
			return fmt.Errorf("%w: record %d value length %d", ErrBadDump, i, vl)
		}
		v = grow(v, int(vl))
		if _, err := io.ReadFull(br, v); err != nil {
			return fmt.Errorf("%w: record %d truncated", ErrBadDump, i)
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("%w: trailing bytes after %d records", ErrBadDump, count)
	}
	return nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
