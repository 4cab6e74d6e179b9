package tlsconf

import "ftkv/wire"

// PlaintextMessage is what a plaintext client of a TLS port is told.
const PlaintextMessage = "this port requires TLS: connect with TLS and the cluster's CA (bin/client -tls-ca ca.pem)"

// WirePlaintext is the answer of an ftkv port with TLS to a client that
// speaks the protocol in clear (tlsgnet.WithOnPlaintext): when its first
// bytes hold a frame, an UNAUTHENTICATED answer to it (same op and id, so
// the client reports it instead of waiting), else one to a HELLO.
func WirePlaintext(first []byte) []byte {
	ans := wire.Frame{Op: wire.OpHello, Status: wire.StatusUnauthenticated, Value: []byte(PlaintextMessage)}
	if f, n, err := wire.Decode(first, 0); err == nil && n > 0 {
		ans.Op, ans.ID = f.Op, f.ID
	}
	return wire.Append(nil, &ans)
}
