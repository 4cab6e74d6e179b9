// Package cli is the engine of bin/client, ftkv's command-line client.
//
// Run parses the flags, then either runs one command given on the command
// line (one-shot mode) or reads commands one per line from a file, a pipe or
// an interactive terminal (session mode). The store behind it is a Store; the
// real one is *client.Client, tests substitute an in-memory fake.
//
// Exit status: 0 success, 1 a G found nothing or a T mismatched, 2 a usage
// error (also a key or value over the limit), 3 the cluster did not answer in
// time. The full contract is the usage text (Usage).
package cli
