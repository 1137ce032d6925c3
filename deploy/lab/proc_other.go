//go:build !linux

package lab

import (
	"errors"
	"syscall"
)

// The lab is made of Linux network namespaces; elsewhere it compiles (so the
// CLI builds) and every operation fails with errUnsupported.

var errUnsupported = errors.New("the lab needs Linux network namespaces")

func sysProcAttr() *syscall.SysProcAttr             { return &syscall.SysProcAttr{} }
func agentRunning(pid int, stateDir string) bool    { return false }
func signalGroup(pid int, sig syscall.Signal) error { return errUnsupported }
func signalPID(pid int, sig syscall.Signal) error   { return errUnsupported }
func pidGone(pid int) bool                          { return true }
func isRoot() bool                                  { return false }
