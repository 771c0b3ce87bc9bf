package container

import "io"

// TermSize is a terminal size asked for by a streaming client (exec or attach with a tty).
type TermSize struct {
	Width, Height uint16
}

// StreamIO is a streaming client's side of an exec or attach: what it sends (Stdin) and
// where the process's output goes. A nil member is not wired: no stdin, or output dropped.
// With TTY, stdout and stderr are the same terminal and everything goes to Stdout.
type StreamIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.WriteCloser
	TTY            bool
	// Resize delivers terminal size changes until it is closed; nil without a tty.
	Resize <-chan TermSize
}
