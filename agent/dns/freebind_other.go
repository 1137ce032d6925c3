//go:build !linux

package dns

import "syscall"

func freebind(network, address string, c syscall.RawConn) error { return nil }
