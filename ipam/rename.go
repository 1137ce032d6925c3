package ipam

import "fmt"

// Rename moves the allocation of (id, ifname) to (newID, newIfName), keeping
// its address. Flat mode uses it to turn a fresh allocation whose address
// answered on the LAN into a permanent "foreign device" hold, so the
// address is never handed out while the agent goes on to the next one.
// The Docker plugin uses it to bind an address to its endpoint and, with
// the same id and ifname, to set only the name.
func (a *Allocator) Rename(id, ifname, newID, newIfName, newName string) error {
	a.mu.Lock()
	defer a.unlockAndFlush()
	al, ok := a.allocs[allocKey{id, ifname}]
	if !ok {
		return fmt.Errorf("renaming: %s %s holds no address", id, ifname)
	}
	if _, taken := a.allocs[allocKey{newID, newIfName}]; taken && (newID != id || newIfName != ifname) {
		return fmt.Errorf("renaming: %s %s already holds an address", newID, newIfName)
	}
	old := *al
	a.removeAlloc(al)
	al.ID, al.IfName, al.Name = newID, newIfName, newName
	a.addAlloc(al)
	if err := a.save(); err != nil {
		a.removeAlloc(al)
		*al = old
		a.addAlloc(al)
		return err
	}
	a.notify()
	return nil
}
