package gateway

import (
	"strconv"

	"github.com/tidwall/redcon"
)

// The reply encoders: redcon's Append* for what RESP2 and RESP3 share, and
// the few RESP3 types redcon does not write (null, map, verbatim string),
// each falling back to its RESP2 form on a connection that did not say
// HELLO 3.

func appendNull(b []byte, proto int) []byte {
	if proto >= 3 {
		return append(b, '_', '\r', '\n')
	}
	return redcon.AppendNull(b)
}

// appendMap starts a map of n pairs (RESP2: an array of 2n elements).
func appendMap(b []byte, n, proto int) []byte {
	if proto >= 3 {
		b = append(b, '%')
		b = strconv.AppendInt(b, int64(n), 10)
		return append(b, '\r', '\n')
	}
	return redcon.AppendArray(b, 2*n)
}

// appendVerbatim writes text as a verbatim string of format txt (RESP2: a
// bulk string), as Redis answers INFO.
func appendVerbatim(b []byte, text string, proto int) []byte {
	if proto < 3 {
		return redcon.AppendBulkString(b, text)
	}
	b = append(b, '=')
	b = strconv.AppendInt(b, int64(len(text)+4), 10)
	b = append(b, "\r\ntxt:"...)
	b = append(b, text...)
	return append(b, '\r', '\n')
}

func appendValue(b, v []byte, found bool, proto int) []byte {
	if !found {
		return appendNull(b, proto)
	}
	return redcon.AppendBulk(b, v)
}
