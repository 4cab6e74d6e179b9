// Package tlsconf turns the tls_cert, tls_key and tls_ca files of a
// cluster into *tls.Config values for each role, and makes a test CA with
// certificates for every role (bin/coord -gen-certs).
//
// Every link is TLS 1.3. A certificate names its holder's role in a URI
// SAN (ftkv:role:server, ftkv:role:coordinator, ftkv:role:client) and is
// signed by the cluster's CA; each side checks the other's chain against
// that CA and its role against the roles the port or link admits
// (VerifyConnection), so a client certificate cannot open a replication
// or control link and a server cannot be impersonated with one. Internal
// links (coordinator<->server, server<->server, coordinator<->coordinator)
// are mutual TLS; on client ports a client certificate is optional and,
// when given, must come from the cluster CA.
//
// Host names are not checked: servers are spawned on loopback, ssh hosts,
// spares and namespace addresses that change with each respawn, and the
// CA is the cluster's own, so identity is "holds a key the cluster CA
// certified for this role", not "is this address".
package tlsconf
