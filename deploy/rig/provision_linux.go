package rig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// provisionScript is deploy/vagrant/provision.sh next to this package.
func provisionScript() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate deploy/vagrant/provision.sh: pass Options.Provision")
	}
	return filepath.Join(filepath.Dir(file), "..", "vagrant", "provision.sh"), nil
}

// Upload puts the .deb, the gossip key and provision.sh into machine name's
// /tmp, where Vagrant's file provisioners put them.
func (r *Rig) Upload(name string) error {
	script := r.o.Provision
	if script == "" {
		var err error
		if script, err = provisionScript(); err != nil {
			return err
		}
	}
	if r.o.Deb == "" {
		return errors.New("no .deb to install (Options.Deb; make deb builds one)")
	}
	r.mu.Lock()
	key := r.s.KeyFile
	r.mu.Unlock()
	for _, f := range []struct {
		src, dst string
		mode     os.FileMode
	}{
		{r.o.Deb, "/tmp/flatmesh.deb", 0o644},
		{key, "/tmp/gossip.key", 0o600},
		{script, "/tmp/provision.sh", 0o755},
	} {
		if err := r.CopyIn(name, f.src, f.dst, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// Provision runs provision.sh in every machine, the first one first (the
// seed); the others join it. Each run ends when the agent is ready
// (Type=notify), which is the "agent ready" figure.
func (r *Rig) Provision(ctx context.Context) error {
	ms := r.Machines()
	if len(ms) == 0 {
		return errors.New("the rig has no machines")
	}
	seed := ms[0].Addr.Addr().String()
	all := time.Now()
	for _, m := range ms {
		if err := r.ProvisionMachine(ctx, m.Name, seed); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.timings.ProvisionAll = time.Since(all)
	r.mu.Unlock()
	return nil
}

// ProvisionMachine uploads the files and runs provision.sh in one machine.
func (r *Rig) ProvisionMachine(ctx context.Context, name, seed string) error {
	m, err := r.Machine(name)
	if err != nil {
		return err
	}
	if err := r.Upload(name); err != nil {
		return err
	}
	r.say("provisioning %s (provision.sh %s %s %s eth0)", name, name, m.Addr.Addr(), seed)
	start := time.Now()
	out, err := r.Exec(ctx, name, "/tmp/provision.sh", name, m.Addr.Addr().String(), seed, "eth0")
	if err != nil {
		return fmt.Errorf("provisioning %s: %w\n%s", name, err, lastLines(string(out), 40))
	}
	d := time.Since(start)
	r.mu.Lock()
	r.timings.AgentReady = append(r.timings.AgentReady, d)
	r.mu.Unlock()
	r.say("%s: agent ready (%s)", name, d.Round(time.Millisecond))
	return nil
}

// Load opens the rig recorded under the default work dir for name.
func Load(name string) (*Rig, error) {
	o, err := Options{Name: name}.withDefaults()
	if err != nil {
		return nil, err
	}
	s, err := loadState(o.WorkDir)
	if err != nil {
		return nil, err
	}
	return &Rig{o: o, log: o.Logger, s: s, exited: map[string]chan struct{}{}}, nil
}
