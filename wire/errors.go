package wire

import "errors"

// Decoding errors. A connection that produces one is closed: framing cannot
// be resynchronised after garbage.
var (
	ErrTooLarge  = errors.New("wire: too large")
	ErrMalformed = errors.New("wire: malformed frame")
	ErrVersion   = errors.New("wire: unsupported protocol version")
)
