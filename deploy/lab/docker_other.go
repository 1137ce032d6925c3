//go:build !linux

package lab

// stopDockerds: lab dockerds run only on Linux.
func (l *Lab) stopDockerds() error { return nil }
