// Package resp is RESP, the Redis protocol, as far as the load generator's
// Redis target needs it: commands are arrays of bulk strings; replies are
// parsed by a pure function that says "need more bytes" by returning n == 0
// and a nil error.
package resp

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// ErrProtocol is wrapped by every malformed-reply error of ParseReply.
var ErrProtocol = errors.New("resp: protocol error")

// Limits of ParseReply; Redis never comes near them for this workload.
const (
	maxBulkLen   = 512 << 20
	maxArrayLen  = 1 << 20
	maxReplyNest = 16
)

// Reply is one parsed RESP reply. Str aliases the parsed buffer.
type Reply struct {
	Type  byte    // '+' simple string, '-' error, ':' integer, '$' bulk, '*' array, '_' null
	Str   []byte  // '+', '-', '$' payload
	Int   int64   // ':' value
	Nil   bool    // null bulk ($-1), null array (*-1) or RESP3 null (_)
	Elems []Reply // '*' elements
}

// AppendCommand appends the RESP encoding of a command, an array of bulk
// strings, to dst.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// ParseReply parses the first reply in b and returns it with the number of
// bytes it used. n == 0 and err == nil mean b holds only part of a reply.
func ParseReply(b []byte) (r Reply, n int, err error) {
	return parseReply(b, 0)
}

func parseReply(b []byte, depth int) (Reply, int, error) {
	if len(b) == 0 {
		return Reply{}, 0, nil
	}
	line, n := readLine(b)
	if n < 0 {
		return Reply{}, 0, fmt.Errorf("%w: line ends in a bare LF", ErrProtocol)
	}
	if n == 0 {
		if len(b) > 64<<10 { // no header line is this long
			return Reply{}, 0, fmt.Errorf("%w: reply line over 64 KiB", ErrProtocol)
		}
		return Reply{}, 0, nil
	}
	if len(line) == 0 {
		return Reply{}, 0, fmt.Errorf("%w: empty line", ErrProtocol)
	}
	r := Reply{Type: b[0]}
	body := line[1:]
	switch r.Type {
	case '+', '-':
		r.Str = body
		return r, n, nil
	case ':':
		v, err := parseInt(body)
		if err != nil {
			return Reply{}, 0, err
		}
		r.Int = v
		return r, n, nil
	case '_':
		if len(body) != 0 {
			return Reply{}, 0, fmt.Errorf("%w: bad null %q", ErrProtocol, line)
		}
		r.Nil = true
		return r, n, nil
	case '$':
		size, err := parseInt(body)
		if err != nil {
			return Reply{}, 0, err
		}
		if size == -1 {
			r.Nil = true
			return r, n, nil
		}
		if size < 0 || size > maxBulkLen {
			return Reply{}, 0, fmt.Errorf("%w: bad bulk length %d", ErrProtocol, size)
		}
		end := n + int(size)
		if len(b) < end+2 {
			return Reply{}, 0, nil
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			return Reply{}, 0, fmt.Errorf("%w: bulk string not followed by CRLF", ErrProtocol)
		}
		r.Str = b[n:end]
		return r, end + 2, nil
	case '*':
		count, err := parseInt(body)
		if err != nil {
			return Reply{}, 0, err
		}
		if count == -1 {
			r.Nil = true
			return r, n, nil
		}
		if count < 0 || count > maxArrayLen {
			return Reply{}, 0, fmt.Errorf("%w: bad array length %d", ErrProtocol, count)
		}
		if depth >= maxReplyNest {
			return Reply{}, 0, fmt.Errorf("%w: arrays nested over %d deep", ErrProtocol, maxReplyNest)
		}
		r.Elems = make([]Reply, 0, min(count, 64))
		for range count {
			e, m, err := parseReply(b[n:], depth+1)
			if err != nil || m == 0 {
				return Reply{}, 0, err
			}
			r.Elems = append(r.Elems, e)
			n += m
		}
		return r, n, nil
	}
	return Reply{}, 0, fmt.Errorf("%w: unsupported reply type %q", ErrProtocol, r.Type)
}

// readLine returns the first CRLF-terminated line of b without its CRLF,
// and the bytes it used (0: no complete line yet; -1: a bare LF).
func readLine(b []byte) ([]byte, int) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, 0
	}
	if i == 0 || b[i-1] != '\r' {
		return nil, -1
	}
	return b[:i-1], i + 1
}

func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, fmt.Errorf("%w: bad integer %q", ErrProtocol, b)
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad integer %q", ErrProtocol, b)
	}
	return v, nil
}
