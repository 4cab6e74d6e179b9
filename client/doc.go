// Package client is the Go client of ftkv.
//
//	c, err := client.Dial(ctx, "127.0.0.1:7000") // the coordinator's client port
//	c, err := client.Dial(ctx, "h1:7000,h2:7010,h3:7020") // a group of coordinators
//	defer c.Close()
//	err = c.Put(ctx, "k", []byte("v"))
//	v, err := c.Get(ctx, "k") // errors.Is(err, client.ErrNotFound) when absent
//
// A Client is safe for concurrent use: requests from all goroutines are
// pipelined on shared connections, one per server by default. It caches the
// cluster view and refreshes it only when a server answers "wrong server" or
// "stale epoch", or a connection fails. With a group of coordinators it
// asks whichever answers (a follower serves views too), moving on when one
// is unreachable, silent, behind, or redirects to the leader. Writes carry the client's id and a
// sequence number; a retried write is applied at most once. Every call
// returns only when its outcome is known or its context ends.
package client
