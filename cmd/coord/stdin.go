package main

import (
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// backgroundPoll is how often a coordinator started in the background of
// a terminal checks whether it was brought to the foreground.
const backgroundPoll = 250 * time.Millisecond

// inBackground reports whether f is a terminal whose foreground process
// group is not ours: reading it would stop the process (SIGTTIN).
func inBackground(f *os.File) bool {
	fg, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && fg != unix.Getpgrp()
}

// watchStdin closes the returned channel at the end of stdin. A
// coordinator started in the background of a terminal (`bin/coord … &`)
// does not read it until it is brought to the foreground (`fg`): a read
// there stopped it before it spawned a server ("Stopped (tty input)").
func watchStdin() <-chan struct{} {
	eof := make(chan struct{})
	go func() {
		for inBackground(os.Stdin) {
			time.Sleep(backgroundPoll)
		}
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	return eof
}

// nullStdin reports whether stdin is a character device other than a
// terminal (/dev/null: a service manager's, `</dev/null`, nohup's), whose
// end at once stops a coordinator that was meant to run.
func nullStdin() bool {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	_, err = unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return err != nil
}
