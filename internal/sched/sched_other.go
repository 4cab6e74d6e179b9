//go:build !linux

package sched

import (
	"errors"
	"fmt"
)

// Apply does nothing off Linux.
func Apply(policy string) error { return Check(policy) }

// Thread is not available off Linux.
func Thread(int) (int, error) { return 0, errors.New("scheduling policy: Linux only") }

// Name is not available off Linux.
func Name(policy int) string { return fmt.Sprint("policy ", policy) }
