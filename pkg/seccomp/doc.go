// Package seccomp turns an OCI seccomp profile (runtime-spec LinuxSeccomp) into a classic
// BPF program and installs it, in pure Go (no libseccomp, no cgo). It also resolves the
// CRI's profile choices (RuntimeDefault, Unconfined, Localhost) into such a profile; the
// RuntimeDefault rules are Docker's and containerd's (github.com/moby/profiles/seccomp).
package seccomp

//go:generate go run ./gen -o zsyscalls.go
