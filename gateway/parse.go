package gateway

import (
	"bytes"
	"encoding/hex"
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

// maxArgs is the most arguments of one command under limit: one per 64
// bytes of the limit (262,144 under the default 16 MiB), so that its
// slice headers (24 bytes each, twice: parsed and copied) stay within a
// fraction of the limit. Counted at 6 bytes, 2,390,001 arguments in 16.7
// MB, never finished, took the gateway from 11 to 365 MB (an attack).
func maxArgs(limit int) int { return max(limit/64, 16) }

// tooManyArgs is the answer to a command of more than maxArgs arguments.
func tooManyArgs(limit int) errProtocol {
	return errProtocol("request over the gateway's limit of " + itoa(int64(maxArgs(limit))) + " arguments")
}

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
// limit with what precedes it, or a count over maxArgs(limit), is refused
// as soon as its line is read,
// never waited on. (redcon's parser waits on any length and panics on
// some negative and huge ones.) Inline commands are split as Redis splits
// them (redcon's splitting differs).
func readCommand(p []byte, argsbuf [][]byte, limit int) (complete bool, args [][]byte, rest []byte, err error) {
	return readFrom(p, nil, argsbuf, limit)
}

// readState is where reading a long array command left off: the input of
// a command longer than one read is read on from there, and only once it
// can hold the whole command (need). Read from the start at every read,
// a command of 1M arguments took 6 to 10 s and held other connections of
// its event loop as long (a review, 2026-12-03). It holds nothing per
// argument (the arguments are sliced once the command is complete, in one
// more pass): its spans and the arguments rebuilt at every read made an
// unfinished command of 2.4M arguments hold 350 MB (an attack).
type readState struct {
	count int // the command's argument count; 0: its header not read yet
	read  int // the arguments read
	next  int // where its next argument starts
	need  int // the input the command takes at least
}

func (st *readState) reset() { *st = readState{} }

// wait notes that the command is not complete: its next argument (the
// read-th of count) starts at next, and it takes at least need bytes.
func (st *readState) wait(count, read, next, need int) {
	if st != nil {
		st.count, st.read, st.next, st.need = count, read, next, need
	}
}

// readFrom is readCommand going on where st left off (st nil: from the
// start, nothing kept). p must begin with the input st was read from.
func readFrom(p []byte, st *readState, argsbuf [][]byte, limit int) (complete bool, args [][]byte, rest []byte, err error) {
	args = argsbuf[:0]
	if len(p) == 0 {
		return false, args, p, nil
	}
	if p[0] != '*' {
		return readInline(p, args)
	}
	limit = min(limit, maxLimit)
	var count, i, j int
	if st != nil && st.count > 0 {
		count, j, i = st.count, st.read, st.next
	} else {
		var ok bool
		count, i, ok = readLength(p, 1, limit)
		switch {
		case i < 0 && len(p) > inlineMax:
			return false, args, p, errCountTooBig
		case i < 0:
			st.wait(0, 0, 0, len(p)+1)
			return false, args, p, nil
		case !ok, count > limit:
			return false, args, p, errMultibulkLength
		case count < 0:
			return true, args, p[i:], nil // skipped, as Redis does (and "*0")
		case i+count*minArg > limit:
			return false, args, p, overLimit(limit)
		case count > maxArgs(limit):
			return false, args, p, tooManyArgs(limit)
		}
	}
	for ; j < count; j++ {
		if i == len(p) {
			st.wait(count, j, i, i+(count-j)*minArg)
			return false, args[:0], p, nil
		}
		if p[i] != '$' {
			return false, args[:0], p, errProtocol("expected '$', got '" + string(p[i]) + "'")
		}
		n, next, ok := readLength(p, i+1, limit)
		switch {
		case next < 0 && len(p)-i > inlineMax:
			return false, args[:0], p, errBulkCountTooBig
		case next < 0:
			st.wait(count, j, i, max(len(p)+1, i+(count-j)*minArg))
			return false, args[:0], p, nil
		case !ok, n < 0, n > limit:
			return false, args[:0], p, errBulkLength
		case next+n+2+(count-j-1)*minArg > limit:
			return false, args[:0], p, overLimit(limit)
		case len(p)-next < n+2:
			st.wait(count, j, i, next+n+2+(count-j-1)*minArg)
			return false, args[:0], p, nil
		case p[next+n] != '\r' || p[next+n+1] != '\n':
			return false, args[:0], p, errBulkLength
		}
		if st == nil {
			args = append(args, p[next:next+n:next+n])
		}
		i = next + n + 2
	}
	if st != nil {
		// Complete: its arguments, read again from its start (once).
		return readFrom(p, nil, argsbuf, limit)
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

// errQuotes is Redis's answer to an inline command it cannot split.
const errQuotes = errProtocol("unbalanced quotes in request")

// inlineMax is the longest inline command waited on for its end of line,
// and errInlineTooBig the answer beyond, as Redis's (PROTO_INLINE_MAX_SIZE):
// a line is looked through from its start at every read.
const (
	inlineMax       = 64 << 10
	errInlineTooBig = errProtocol("too big inline request")
	// A count's or a length's line is waited on as long (Redis's
	// errors); a longer one is no number (assembled one byte at a time,
	// "*" and 300 KiB of digits took seconds of its loop: a test).
	errCountTooBig     = errProtocol("too big mbulk count string")
	errBulkCountTooBig = errProtocol("too big bulk count string")
)

// readInline reads an inline command (a line not starting with '*', as
// redis-cli's and telnet's): its arguments are copies, split as Redis's
// sdssplitargs splits them.
func readInline(p []byte, args [][]byte) (bool, [][]byte, []byte, error) {
	nl := bytes.IndexByte(p, '\n')
	if nl < 0 {
		if len(p) > inlineMax {
			return false, args, p, errInlineTooBig
		}
		return false, args, p, nil
	}
	line := p[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, ok := splitArgs(line, args)
	if !ok {
		return false, args[:0], p, errQuotes
	}
	return true, args, p[nl+1:], nil
}

// splitArgs appends the arguments of line to args as Redis's
// sdssplitargs splits a line: separated by blanks; "double quotes" take
// \n \r \t \b \a, \xHH and \c for any other c; 'single quotes' only
// \'; a quote may start within an argument, and a closing quote must end
// it. A NUL ends the line, as it ends Redis's C string. ok is false for
// unbalanced quotes.
func splitArgs(line []byte, args [][]byte) ([][]byte, bool) {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	blank := func(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f' }
	i := 0
	for {
		for i < len(line) && blank(line[i]) {
			i++
		}
		if i == len(line) {
			return args, true
		}
		cur := []byte{}
		inq, insq := false, false
		for done := false; !done; i++ {
			if i == len(line) {
				if inq || insq {
					return args, false
				}
				break
			}
			c := line[i]
			switch {
			case inq && c == '\\' && i+3 < len(line) && line[i+1] == 'x' && hexByte(line[i+2:i+4], &cur):
				i += 3
			case inq && c == '\\' && i+1 < len(line):
				i++
				switch e := line[i]; e {
				case 'n':
					cur = append(cur, '\n')
				case 'r':
					cur = append(cur, '\r')
				case 't':
					cur = append(cur, '\t')
				case 'b':
					cur = append(cur, '\b')
				case 'a':
					cur = append(cur, '\a')
				default:
					cur = append(cur, e)
				}
			case inq && c == '"', insq && c == '\'':
				if i+1 < len(line) && !blank(line[i+1]) {
					return args, false
				}
				done = true
			case insq && c == '\\' && i+1 < len(line) && line[i+1] == '\'':
				i++
				cur = append(cur, '\'')
			case inq || insq:
				cur = append(cur, c)
			case c == ' ' || c == '\n' || c == '\r' || c == '\t':
				done = true
			case c == '"':
				inq = true
			case c == '\'':
				insq = true
			default:
				cur = append(cur, c)
			}
		}
		args = append(args, cur)
	}
}

// hexByte appends the byte two hex digits spell to cur, if they do.
func hexByte(digits []byte, cur *[]byte) bool {
	var b [1]byte
	if _, err := hex.Decode(b[:], digits); err != nil {
		return false
	}
	*cur = append(*cur, b[0])
	return true
}
