package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// scanBuf is the size of the buffer segments are read through. A segment
// is read in pieces rather than whole: a fresh 16 MiB buffer per segment
// made the reads of a recovery or a partial resync cost their memory's
// first touch (on this project's virtual machines about 4.5 ms per MiB,
// against 0.07 ms per MiB to copy from the page cache). A larger batch
// grows the buffer.
const scanBuf = 256 << 10

// fileReader is a file layer that reads a file in pieces (OSFS); others
// are read whole (ReadFile).
type fileReader interface {
	OpenRead(name string) (io.ReadCloser, error)
}

// OpenRead implements fileReader.
func (OSFS) OpenRead(name string) (io.ReadCloser, error) { return os.Open(name) }

// openRead opens segment name for a scan and returns its size.
func openRead(fsys FS, name string) (io.ReadCloser, int64, error) {
	if fr, ok := fsys.(fileReader); ok {
		f, err := fr.OpenRead(name)
		if err != nil {
			return nil, 0, err
		}
		size, err := fsys.Size(name)
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, size, nil
	}
	b, err := fsys.ReadFile(name)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// scanner reads segments' batches through one buffer.
type scanner struct {
	buf        []byte
	start, end int // the bytes read and not yet scanned: buf[start:end]
	eof        bool
	r          io.Reader
}

// fill reads until need bytes are buffered or the file ends.
func (s *scanner) fill(need int) error {
	for s.end-s.start < need && !s.eof {
		if need > len(s.buf) {
			nb := make([]byte, max(need, 2*len(s.buf), scanBuf))
			s.end = copy(nb, s.buf[s.start:s.end])
			s.start, s.buf = 0, nb
		} else if s.start+need > len(s.buf) {
			s.end = copy(s.buf, s.buf[s.start:s.end])
			s.start = 0
		}
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		switch {
		case errors.Is(err, io.EOF):
			s.eof = true
		case err != nil:
			return err
		}
	}
	return nil
}

// scanFile replays the whole batches of segment name (rec is valid only
// during the call) and returns how many bytes they span, and why it
// stopped before the end ("" if not). *lastSeq is the sequence of the
// last batch seen (0: none yet).
func (s *scanner) scanFile(fsys FS, name string, lastSeq *uint64, replay func([]byte) error, rec *Recovery) (int64, string, error) {
	f, size, err := openRead(fsys, name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	if s.buf == nil {
		s.buf = make([]byte, scanBuf)
	}
	s.r, s.start, s.end, s.eof = f, 0, 0, false
	defer func() { s.r = nil }()
	var good int64
	for {
		if err := s.fill(batchHeader); err != nil {
			return good, "", err
		}
		if s.end-s.start < batchHeader {
			if allZero(s.buf[s.start:s.end]) {
				return good, "", nil
			}
			return good, "torn batch header", nil
		}
		h := s.buf[s.start : s.start+batchHeader]
		n := int(binary.BigEndian.Uint32(h))
		sum := binary.BigEndian.Uint32(h[4:])
		seq := binary.BigEndian.Uint64(h[8:])
		if n == 0 && sum == 0 && seq == 0 {
			// A preallocated segment's zeros: the end of what was
			// written (a batch always has a sequence number). What
			// follows was never synced whole, or the sequence check of
			// the next segment's first batch would catch it.
			return good, "", nil
		}
		if n > maxBatch || int64(n) > size-good-batchHeader {
			// (Checked before reading: a damaged length must not make
			// the scan allocate up to maxBatch. A file growing meanwhile,
			// the segment being written, ends the read here as a torn
			// batch would.)
			return good, "torn batch", nil
		}
		if err := s.fill(batchHeader + n); err != nil {
			return good, "", err
		}
		if s.end-s.start < batchHeader+n {
			return good, "torn batch", nil
		}
		h = s.buf[s.start : s.start+batchHeader]
		body := s.buf[s.start+batchHeader : s.start+batchHeader+n]
		c := crc32.Update(0, castagnoli, h[8:16])
		if crc32.Update(c, castagnoli, body) != sum {
			return good, "batch checksum mismatch", nil
		}
		if *lastSeq != 0 && seq != *lastSeq+1 {
			return good, fmt.Sprintf("batch sequence %d after %d", seq, *lastSeq), nil
		}
		// Records inside a checksummed batch are well-formed unless the
		// writer was wrong: refuse loudly rather than guess.
		for b := body; len(b) > 0; {
			if len(b) < 4 || int(binary.BigEndian.Uint32(b)) > len(b)-4 {
				return 0, "", fmt.Errorf("wal: malformed record in batch %d", seq)
			}
			rn := int(binary.BigEndian.Uint32(b))
			if err := replay(b[4 : 4+rn]); err != nil {
				return 0, "", err
			}
			rec.Records++
			b = b[4+rn:]
		}
		rec.Batches++
		*lastSeq = seq
		s.start += batchHeader + n
		good += int64(batchHeader + n)
	}
}
