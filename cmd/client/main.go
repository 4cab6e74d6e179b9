// Command client is ftkv's command-line client.
//
//	client -h <coord_host> -p <coord_port> [-f <file>] [-timeout 5s] [COMMAND ARGS...]
//	client -h <host:port,host:port,...> [-f <file>] [-timeout 5s] [COMMAND ARGS...]
//
// With a command (P, G, D, T, A, status) it runs it and exits; without one
// it reads commands line by line from -f, a pipe, or a terminal prompt with
// line editing and history. `client -help` prints the full contract; the
// engine is ftkv/internal/cli.
package main

import (
	"os"

	"ftkv/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
