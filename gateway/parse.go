package gateway

import (
	"bytes"

	"github.com/tidwall/redcon"
)

// Redis's answers to lengths it refuses (networking.c), word for word.
const (
	errBulkLength      = errProtocol("invalid bulk length")
	errMultibulkLength = errProtocol("invalid multibulk length")
)

// overLimit is the answer to a command longer than the request limit.
func overLimit(limit int) errProtocol {
	return errProtocol("request over the gateway's limit of " + itoa(int64(limit)) + " bytes")
}

// minArg is the smallest argument's bytes: "$0\r\n\r\n".
const minArg = 6

// maxLimit bounds the limit readCommand applies (no arithmetic on the
// lengths it reads can overflow).
const maxLimit = 1 << 48

// readCommand reads the first command of p, a command of at most limit
// bytes: complete, its arguments (aliasing p, or a copy for an inline
// command starting with '$') and the input after it; or a protocol error.
//
// Arrays of bulk strings are parsed here, as Redis does: a count or a
// length that is not a plain decimal number, a negative length, one over
// the limit (Redis's proto-max-bulk-len), or one that cannot fit in the
// limit with what precedes it is refused as soon as its line is read,
// never waited on. (redcon's parser waits on any length and panics on
// some negative and huge ones.) Inline commands are redcon's.
func readCommand(p []byte, argsbuf [][]byte, limit int) (complete bool, args [][]byte, rest []byte, err error) {
	args = argsbuf[:0]
	if len(p) == 0 {
		return false, args, p, nil
	}
	switch p[0] {
	case '*':
	case '$':
		return readDollarInline(p, args)
	default:
		complete, args, _, rest, err = redcon.ReadNextCommand(p, args)
		return complete, args, rest, err
	}
	limit = min(limit, maxLimit)
	count, i, ok := readLength(p, 1, limit)
	switch {
	case i < 0:
		return false, args, p, nil
	case !ok, count > limit:
		return false, args, p, errMultibulkLength
	case count < 0:
		return true, args, p[i:], nil // skipped, as Redis does (and "*0")
	case i+count*minArg > limit:
		return false, args, p, overLimit(limit)
	}
	for j := 0; j < count; j++ {
		if i == len(p) {
			return false, args[:0], p, nil
		}
		if p[i] != '$' {
			return false, args[:0], p, errProtocol("expected '$', got '" + string(p[i]) + "'")
		}
		n, next, ok := readLength(p, i+1, limit)
		switch {
		case next < 0:
			return false, args[:0], p, nil
		case !ok, n < 0, n > limit:
			return false, args[:0], p, errBulkLength
		case next+n+2+(count-j-1)*minArg > limit:
			return false, args[:0], p, overLimit(limit)
		case len(p)-next < n+2:
			return false, args[:0], p, nil
		case p[next+n] != '\r' || p[next+n+1] != '\n':
			return false, args[:0], p, errBulkLength
		}
		args = append(args, p[next:next+n:next+n])
		i = next + n + 2
	}
	return true, args, p[i:], nil
}

// readLength reads the number on the line starting at p[from] (after '*'
// or '$'): the number, the index after the line, and whether it is a
// plain decimal number as Redis's string2ll takes it (an optional '-',
// no leading zero, no '+' or space). next is -1 when the line is not
// complete. A number over limit is returned as limit+1 (its digits are
// not read further: no overflow).
func readLength(p []byte, from, limit int) (n, next int, ok bool) {
	nl := bytes.IndexByte(p[from:], '\n')
	if nl < 0 {
		return 0, -1, false
	}
	nl += from
	next = nl + 1
	if nl == from || p[nl-1] != '\r' {
		return 0, next, false
	}
	digits := p[from : nl-1]
	neg := len(digits) > 0 && digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] == '0' && (len(digits) > 1 || neg) {
		return 0, next, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, next, false
		}
		if n <= limit {
			n = n*10 + int(c-'0')
		}
	}
	if n > limit {
		n = limit + 1
	}
	if neg {
		n = -n
	}
	return n, next, true
}

// readDollarInline reads a line starting with '$' outside an array as
// Redis does, as an inline command (redcon would read a Tile38 command
// and wait for a space): its arguments are a copy, parsed by redcon's
// inline parser.
func readDollarInline(p []byte, args [][]byte) (bool, [][]byte, []byte, error) {
	nl := bytes.IndexByte(p, '\n')
	if nl < 0 {
		return false, args, p, nil
	}
	line := make([]byte, 0, nl+2)
	line = append(append(line, ' '), p[:nl+1]...) // (a leading space makes it inline to redcon)
	complete, args, _, _, err := redcon.ReadNextCommand(line, args)
	return complete, args, p[nl+1:], err
}
