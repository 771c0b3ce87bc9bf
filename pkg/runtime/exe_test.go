package runtime_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cri-mini/cri-mini/pkg/runtime"
)

// sealedSelfCheck is a subcommand of the test binary: it asks for a sealed copy of itself
// and prints whether it got its own executable back ("reused") or a new copy ("copied").
const sealedSelfCheck = "sealed-self-check"

func sealedSelfMain() int {
	f, err := runtime.SealedExecutable("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	var got, self unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &got); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := unix.Stat("/proc/self/exe", &self); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if got.Dev == self.Dev && got.Ino == self.Ino {
		fmt.Println("reused")
	} else {
		fmt.Println("copied")
	}
	return 0
}

// assertImmutable checks the CVE-2019-5736 property: no handle on f, however it is reopened,
// can change the binary.
func assertImmutable(t *testing.T, f *os.File) {
	t.Helper()
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EBADF) {
		t.Errorf("write through the sealed copy's own descriptor: %v, want EPERM or EBADF", err)
	}
	w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDWR, 0)
	if err != nil {
		return // cannot even be reopened for writing: fine
	}
	defer w.Close()
	if _, err := w.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("write through a reopened handle: %v, want EPERM", err)
	}
	if err := w.Truncate(0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("truncate through a reopened handle: %v, want EPERM", err)
	}
}

func TestSealedExecutable(t *testing.T) {
	f, err := runtime.SealedExecutable("")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != int64(len(self)) {
		t.Fatalf("sealed copy has %d bytes, the binary %d", st.Size(), len(self))
	}
	assertImmutable(t, f)

	for _, tc := range []struct {
		name string
		path string // what the child is executed from
		want string
	}{
		// Started from the file on disk: every spawn must copy, the file is writable.
		{"from the binary", "/proc/self/exe", "copied"},
		// Started from a sealed copy (a monitor launched by the daemon): reuse it.
		{"from a sealed copy", "/proc/self/fd/3", "reused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.path, sealedSelfCheck)
			cmd.ExtraFiles = []*os.File{f}
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("%v: %s", err, errb.String())
			}
			if got := strings.TrimSpace(out.String()); got != tc.want {
				t.Errorf("child started %s: %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}
