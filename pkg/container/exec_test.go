package container

import (
	"bytes"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCapBuffer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []int
		want   int
	}{
		{"empty", nil, 0},
		{"under the cap", []int{10, 20}, 30},
		{"exactly the cap", []int{MaxExecOutput}, MaxExecOutput},
		{"one write over", []int{MaxExecOutput + 5}, MaxExecOutput},
		{"many writes over", []int{MaxExecOutput - 3, 10, 10}, MaxExecOutput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c capBuffer
			var all []byte
			for i, n := range tc.writes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				all = append(all, p...)
				if got, err := c.Write(p); got != n || err != nil {
					t.Fatalf("write %d: %d, %v; want %d, nil (the copy must keep draining)", i, got, err, n)
				}
			}
			if len(c.Bytes()) != tc.want || !bytes.Equal(c.Bytes(), all[:tc.want]) {
				t.Errorf("kept %d bytes, want the first %d", len(c.Bytes()), tc.want)
			}
		})
	}
}

func TestExecProcess(t *testing.T) {
	base := &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"A=1"}, Cwd: "/w", Terminal: true,
		User: specs.User{UID: 7}, ConsoleSize: &specs.Box{Height: 1, Width: 2}}
	cmd := []string{"sh", "-c", "true"}
	p := execProcess(base, cmd)
	cmd[0] = "changed"
	if p.Args[0] != "sh" || len(p.Args) != 3 || p.Terminal || p.ConsoleSize != nil || p.Cwd != "/w" || p.User.UID != 7 || p.Env[0] != "A=1" {
		t.Errorf("exec process %+v: want the command, no terminal, the container's cwd, user and env", p)
	}
	if base.Args[0] != "sleep" || !base.Terminal {
		t.Errorf("the container's process was changed: %+v", base)
	}
}
