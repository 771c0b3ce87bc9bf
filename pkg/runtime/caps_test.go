package runtime

import (
	"reflect"
	"slices"
	"testing"
)

func TestCanonicalCapability(t *testing.T) {
	cases := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "NET_ADMIN", want: "CAP_NET_ADMIN"},
		{in: "net_admin", want: "CAP_NET_ADMIN"},
		{in: "CAP_SYS_ADMIN", want: "CAP_SYS_ADMIN"},
		{in: "cap_chown", want: "CAP_CHOWN"},
		{in: "all", want: "ALL"},
		{in: "ALL", want: "ALL"},
		{in: "NET_FOO", wantErr: true},
		{in: "", wantErr: true},
		{in: "CAP_", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := CanonicalCapability(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("CanonicalCapability(%q) = %q, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("CanonicalCapability(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestResolveCapabilities(t *testing.T) {
	all := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"}
	def := DefaultCapabilities()
	slices.Sort(def)
	without := func(drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(def), func(c string) bool { return slices.Contains(drop, c) })
	}
	cases := []struct {
		name      string
		add, drop []string
		want      []string
	}{
		{name: "defaults", want: def},
		{name: "add one", add: []string{"CAP_NET_ADMIN"}, want: sorted(append(slices.Clone(def), "CAP_NET_ADMIN"))},
		{name: "drop one", drop: []string{"CAP_NET_RAW"}, want: without("CAP_NET_RAW")},
		{name: "drop all", drop: []string{"ALL"}, want: nil},
		{name: "drop all add one", add: []string{"CAP_NET_ADMIN"}, drop: []string{"ALL"}, want: []string{"CAP_NET_ADMIN"}},
		{name: "add all", add: []string{"ALL"}, want: all},
		{name: "add all drop one", add: []string{"ALL"}, drop: []string{"CAP_CHOWN"}, want: []string{"CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"}},
		{name: "add all drop all", add: []string{"ALL"}, drop: []string{"ALL"}, want: nil},
		{name: "add and drop same", add: []string{"CAP_SYS_ADMIN"}, drop: []string{"CAP_SYS_ADMIN"}, want: def},
		{name: "duplicate add", add: []string{"CAP_CHOWN", "CAP_CHOWN"}, want: def},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ResolveCapabilities(tc.add, tc.drop, all)
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ResolveCapabilities(%v, %v) = %v, want %v", tc.add, tc.drop, got, tc.want)
			}
		})
	}
}

func TestProcessCapabilities(t *testing.T) {
	caps := []string{"CAP_CHOWN", "CAP_KILL"}
	cases := []struct {
		name        string
		ambient     []string
		uid         uint32
		bnd, eff, i []string
	}{
		{name: "root", uid: 0, bnd: caps, eff: caps},
		{name: "non-root", uid: 1000, bnd: caps, eff: nil},
		{name: "non-root with ambient", uid: 1000, ambient: []string{"CAP_NET_BIND_SERVICE"},
			bnd: []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"},
			eff: []string{"CAP_NET_BIND_SERVICE"}, i: []string{"CAP_NET_BIND_SERVICE"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := processCapabilities(caps, tc.ambient, tc.uid)
			eq := func(what string, got, want []string) {
				if len(got) == 0 && len(want) == 0 {
					return
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			eq("bounding", pc.Bounding, tc.bnd)
			eq("effective", pc.Effective, tc.eff)
			eq("permitted", pc.Permitted, tc.eff)
			eq("inheritable", pc.Inheritable, tc.i)
			eq("ambient", pc.Ambient, tc.ambient)
		})
	}
}

func TestAvailableCapabilities(t *testing.T) {
	all, err := AvailableCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		if _, err := CanonicalCapability(c); err != nil {
			t.Errorf("available capability %q is not a known name: %v", c, err)
		}
	}
	got, err := capsFromNames(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Errorf("capsFromNames kept %d of %d names", len(got), len(all))
	}
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}
