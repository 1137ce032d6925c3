package flat

import (
	"context"
	"os/exec"
	"time"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// checkManagers refuses a switch-over of a NIC that NetworkManager or
// systemd-networkd manages. They run in the host's (PID 1's) network
// namespace; a NIC in another namespace (a lab host) is not theirs, unless
// PID 1's namespace cannot be read, when the check runs anyway.
func checkManagers(s Snapshot, o Options) error {
	if s.NIC == nil {
		return nil // PlanSwitch says the NIC is missing
	}
	self := o.NetnsPath
	if self == "" {
		self = "/proc/self/ns/net"
	}
	mine, err1 := kernel.StatNetns(self)
	init, err2 := kernel.StatNetns("/proc/1/ns/net")
	if err1 == nil && err2 == nil && mine.ID != init.ID {
		o.Logger.Debug("the NIC is not in PID 1's network namespace: no NetworkManager or systemd-networkd check", "iface", s.NIC.Name)
		return nil
	}
	m := managerCheck{Root: o.Root, NMDeviceState: nmcliDeviceStatus}
	return m.check(s.NIC.Name, s.NIC.Index)
}

// nmcliDeviceStatus runs `nmcli -t -f DEVICE,STATE device status`.
func nmcliDeviceStatus() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nmcli", "-t", "-f", "DEVICE,STATE", "device", "status").Output()
	return string(out), err
}
