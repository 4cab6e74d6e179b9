package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"ftkv/coord"
)

// checkStoreArg runs this binary as the check of a Raft store: bin/coord
// -check-raft-store <path> exits 0 for a whole store, 1 with one line
// for a damaged one (a crash or a loop of the check is the parent's to
// report).
const checkStoreArg = "-check-raft-store"

// checkStoreLimit bounds the check: a store is a few MiB read in
// milliseconds; a damaged one can make bbolt loop (and grow) without end.
// timing: exception — a local file read, not a network or failure wait.
const checkStoreLimit = 5 * time.Second

// checkStoreChild is the child's side.
func checkStoreChild(path string) int {
	err := coord.CheckStore(path)
	if errors.Is(err, coord.ErrStoreInUse) {
		return 3
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// checkStoreInChild checks the Raft store at path in a child process
// within checkStoreLimit.
func checkStoreInChild(path string) error {
	self, err := os.Executable()
	if err != nil {
		return coord.CheckStore(path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkStoreLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, checkStoreArg, path)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	line, _, _ := strings.Cut(strings.TrimSpace(errb.String()), "\n")
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		return coord.ErrStoreInUse
	case ctx.Err() != nil:
		return fmt.Errorf("reading it did not end within %s (its pages point back at each other)", checkStoreLimit)
	case errors.As(err, &ee) && ee.ExitCode() == 1 && line != "":
		return errors.New(line)
	case line != "":
		return fmt.Errorf("reading it crashed: %s", line)
	}
	return fmt.Errorf("reading it failed: %w", err)
}
