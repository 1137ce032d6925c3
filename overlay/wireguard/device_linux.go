package wireguard

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// SystemLinks is the LinkCreator of the namespace ns (the agent's own: a TUN
// and its UAPI socket are created in the calling process's namespaces).
type SystemLinks struct {
	NS     *kernel.NS
	Logger hclog.Logger // for wireguard-go's messages; may be nil
}

var _ LinkCreator = SystemLinks{}

// Existing returns "wireguard", "tun", another kind, or "".
func (s SystemLinks) Existing(name string) (string, error) {
	link, err := s.NS.H.LinkByName(name)
	var lnf netlink.LinkNotFoundError
	if errors.As(err, &lnf) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if tt, ok := link.(*netlink.Tuntap); ok {
		if tt.Mode == netlink.TUNTAP_MODE_TUN {
			return "tun", nil
		}
		return "tap", nil
	}
	return link.Type(), nil
}

// CreateKernel creates a link of kind "wireguard"; a kernel without the
// module answers EOPNOTSUPP, which becomes ErrNoKernel.
func (s SystemLinks) CreateKernel(name string) error {
	err := s.NS.H.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name}})
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w: %w", ErrNoKernel, err)
	}
	return err
}

// Delete removes the link (absent is fine).
func (s SystemLinks) Delete(name string) error { return kernel.DeleteLink(s.NS, name) }

// StartUserspace runs wireguard-go on a persistent TUN: the link (and the
// routes through it) outlives the agent, so a restarted agent re-attaches
// to it and only the tunnel keys and peers need programming again. The
// TUN keeps wireguard-go's GSO/GRO offloads (IFF_VNET_HDR). The UAPI socket
// is /var/run/wireguard/NAME.sock, which wgctrl talks to.
func (s SystemLinks) StartUserspace(name string, mtu int) (io.Closer, error) {
	if s.NS.Path != "" {
		return nil, fmt.Errorf("a userspace device runs in the agent's own namespace, not %s", s.NS)
	}
	t, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("creating tun %s: %w", name, err)
	}
	if err := setPersist(t); err != nil {
		t.Close()
		return nil, err
	}
	log := s.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	wl := &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
	if log.IsTrace() {
		wl.Verbosef = func(f string, a ...any) { log.Trace(fmt.Sprintf(f, a...)) }
	}
	if log.IsDebug() {
		wl.Errorf = func(f string, a ...any) { log.Debug(fmt.Sprintf(f, a...)) }
	}
	dev := device.NewDevice(t, conn.NewDefaultBind(), wl)
	uf, err := ipc.UAPIOpen(name)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("opening the uapi socket of %s: %w", name, err)
	}
	l, err := ipc.UAPIListen(name, uf)
	if err != nil {
		uf.Close()
		dev.Close()
		return nil, fmt.Errorf("listening on the uapi socket of %s: %w", name, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	return &userspace{dev: dev, uapi: l}, nil
}

// setPersist marks the TUN persistent (TUNSETPERSIST), so it is not
// deleted when the agent's descriptor closes.
func setPersist(t tun.Device) error {
	f, ok := t.(interface{ File() *os.File })
	if !ok {
		return errors.New("tun device does not expose its file")
	}
	sc, err := f.File().SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := sc.Control(func(fd uintptr) { ioErr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, 1) }); err != nil {
		return err
	}
	if ioErr != nil {
		return fmt.Errorf("making the tun persistent: %w", ioErr)
	}
	return nil
}

// userspace is a running wireguard-go device.
type userspace struct {
	dev  *device.Device
	uapi net.Listener
}

// Close stops the device; the persistent TUN stays (Delete removes it).
func (u *userspace) Close() error {
	err := u.uapi.Close()
	u.dev.Close()
	return err
}
