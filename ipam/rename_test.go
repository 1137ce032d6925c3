package ipam

import "testing"

func TestRenameMovesAndNames(t *testing.T) {
	b, c := newBus(), newClock()
	a := b.open(t, "h1", c, hostOpts{seed: true})
	al := mustAlloc(t, b, a, c, "docker:pending-1")
	if err := a.Rename("docker:pending-1", "eth0", "docker:ep1", "eth0", ""); err != nil {
		t.Fatal(err)
	}
	if err := a.Rename("docker:ep1", "eth0", "docker:ep1", "eth0", "web"); err != nil {
		t.Fatalf("naming in place: %v", err)
	}
	got, ok := a.Lookup("docker:ep1", "eth0")
	if !ok || got.Name != "web" || got.Prefix != al.Prefix {
		t.Fatalf("after rename: %+v %v (want %s named web)", got, ok, al.Prefix)
	}
	if _, ok := a.Lookup("docker:pending-1", "eth0"); ok {
		t.Fatal("old id still holds the address")
	}
	mustAlloc(t, b, a, c, "other")
	if err := a.Rename("docker:ep1", "eth0", "other", "eth0", ""); err == nil {
		t.Fatal("renaming onto a held id was accepted")
	}
}
