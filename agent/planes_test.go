package agent

import (
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestPlaneRegistry(t *testing.T) {
	for _, m := range registeredModes() {
		if !slices.Contains(Modes, m) {
			t.Errorf("plane %q is registered but not a valid mode (Modes %v)", m, Modes)
		}
		p := newDataPlane(Config{Mode: m}, hclog.NewNullLogger())
		if _, none := p.(membershipPlane); none {
			t.Errorf("registered mode %q built the membership-only plane", m)
		}
		if !p.Capabilities().Attach {
			t.Errorf("registered plane %q cannot attach containers", m)
		}
	}
	p := newDataPlane(Config{Mode: "nosuchmode"}, hclog.NewNullLogger())
	if _, none := p.(membershipPlane); !none || p.Capabilities() != (Capabilities{}) {
		t.Fatalf("a mode without a plane got %T with %+v, want membership only with no capabilities", p, p.Capabilities())
	}
	if len(planes) == 0 {
		return // no plane on this platform
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a mode twice did not panic")
		}
	}()
	registerPlane(registeredModes()[0], nil)
}
