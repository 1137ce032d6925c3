package agent

import (
	"fmt"
	"strconv"
	"strings"
)

// The "63 second delay" (flannel#1279, Calico#3145): kernels before 5.7
// computed a wrong UDP checksum for VXLAN packets that were SNATed with tx
// checksum offload on, so the first SYN of some connections was dropped
// until a retransmit. Fixed upstream in 5.7; Calico decides by kernel
// version too. Turning the offload off costs about 40% of VXLAN throughput
// on a veth lab, so "auto" keeps it on where the kernel is fixed.
const fixedKernelMajor, fixedKernelMinor = 5, 7

// txChecksumOffload resolves the setting ("on", "off", "auto") for a kernel
// release string such as "6.1.0-18-amd64".
func txChecksumOffload(setting, release string) (bool, string) {
	switch setting {
	case "on":
		return true, "set to on"
	case "off":
		return false, "set to off"
	}
	major, minor, ok := kernelVersion(release)
	if !ok {
		return false, fmt.Sprintf("auto: kernel release %q not understood, playing safe", release)
	}
	if major > fixedKernelMajor || (major == fixedKernelMajor && minor >= fixedKernelMinor) {
		return true, fmt.Sprintf("auto: kernel %d.%d has the VXLAN checksum fix", major, minor)
	}
	return false, fmt.Sprintf("auto: kernel %d.%d predates the VXLAN checksum fix (5.7)", major, minor)
}

func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minorText := parts[1]
	if i := strings.IndexFunc(minorText, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorText = minorText[:i]
	}
	minor, err2 := strconv.Atoi(minorText)
	return major, minor, err1 == nil && err2 == nil
}
