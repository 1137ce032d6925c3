package lab

import "context"

// AddIdleHost adds one more host (namespace, switch port, directory) without
// starting its agent, for tests that start it themselves with StartAgent
// and extra flags (a wrong key, another cluster name, a duplicate address).
func (l *Lab) AddIdleHost(ctx context.Context) (Host, error) {
	h, err := l.addHostNet(ctx, len(l.Hosts())+1)
	if err != nil {
		return h, err
	}
	return l.Host(h.Name)
}
