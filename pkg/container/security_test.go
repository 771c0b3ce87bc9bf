package container

import (
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/cri-mini/cri-mini/pkg/sandbox"
	"github.com/cri-mini/cri-mini/pkg/store"
)

func TestCheckPrivileged(t *testing.T) {
	cases := []struct {
		name          string
		ctr, pod, bad bool
	}{
		{name: "neither"},
		{name: "privileged pod, plain container", pod: true},
		{name: "both", ctr: true, pod: true},
		{name: "privileged container in a plain pod", ctr: true, bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPrivileged(Config{Privileged: tc.ctr}, &sandbox.Sandbox{ID: "p", Config: sandbox.Config{Privileged: tc.pod}})
			if tc.bad != errors.Is(err, store.ErrInvalidArgument) || (!tc.bad && err != nil) {
				t.Errorf("checkPrivileged: %v, want an InvalidArgument error: %v", err, tc.bad)
			}
		})
	}
}

func TestSecurityOptions(t *testing.T) {
	sec, err := securityOptions(Config{Privileged: true, CapAdd: []string{"CAP_NET_ADMIN"}, MaskedPaths: []string{"/x"}, NoNewPrivs: true})
	if err != nil {
		t.Fatal(err)
	}
	if !sec.Privileged || !sec.NoNewPrivs || !slices.Equal(sec.CapAdd, []string{"CAP_NET_ADMIN"}) || !slices.Equal(sec.MaskedPaths, []string{"/x"}) {
		t.Errorf("security options %+v", sec)
	}
	// Without root the permitted set is empty: nothing to check then.
	if len(sec.AllCaps) == 0 && os.Geteuid() == 0 {
		t.Error("no available capabilities: privileged and ALL would grant nothing")
	}
}
