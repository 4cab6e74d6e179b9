//go:build !linux

package timerslack

import (
	"errors"
	"time"
)

// Thread is not available off Linux.
func Thread() (time.Duration, error) { return 0, errors.New("timer slack: Linux only") }

// Ensure does nothing off Linux.
func Ensure(time.Duration) error { return nil }
