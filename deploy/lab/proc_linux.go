package lab

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr detaches an agent: its own session and process group, so a
// Ctrl-C in the terminal that ran `lab up` does not reach it, and the lab can
// signal the agent with everything it started as one group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}

// agentRunning reports whether pid is a live (not zombie) process whose
// command line is the agent of stateDir. The command line check makes a
// stale PID that the kernel reused for something else read as "not running".
func agentRunning(pid int, stateDir string) bool {
	if pid <= 0 {
		return false
	}
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil || zombie(string(stat)) {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if err != nil {
		return false
	}
	return cmdlineHasStateDir(cmdline, stateDir)
}

// zombie parses /proc/PID/stat: "pid (comm) S ...", comm may hold spaces
// and parentheses, so the state is the field after the last ')'.
func zombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	s := stat[i+2]
	return s == 'Z' || s == 'X'
}

// cmdlineHasStateDir reports whether a NUL-separated command line holds
// "--state-dir DIR" or "--state-dir=DIR".
func cmdlineHasStateDir(cmdline []byte, stateDir string) bool {
	args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
	for i, a := range args {
		if string(a) == "--state-dir" && i+1 < len(args) && string(args[i+1]) == stateDir {
			return true
		}
		if string(a) == "--state-dir="+stateDir {
			return true
		}
	}
	return false
}

// signalGroup signals the process group led by pid (agents lead their own),
// falling back to the process alone.
func signalGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		err = syscall.Kill(pid, sig)
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// signalPID signals one process; a process already gone is not an error.
func signalPID(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// pidGone reports whether pid no longer exists or is a zombie.
func pidGone(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	return err != nil || zombie(string(stat))
}

func isRoot() bool { return os.Geteuid() == 0 }
