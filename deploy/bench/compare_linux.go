package main

import (
	"context"
	"fmt"
)

// comparePath brings up lab name in mode with agents running
// --compare-binary and returns its path (o) with its setup line, and the
// pairs that compare it: a/o (this build over that one) and o/b (that one
// over the hand-built path).
func (e *env) comparePath(ctx context.Context, name, mode, label string) (benchPath, string, [][2]string, error) {
	l, err := e.upLabBinary(ctx, name, mode, e.o.CompareBinary)
	if err != nil {
		return benchPath{}, "", nil, err
	}
	p, err := labPath(l, "o", "flatmesh-compare-binary", label+", --compare-binary")
	if err != nil {
		return benchPath{}, "", nil, err
	}
	setup := fmt.Sprintf("(o) lab %s: as (a), agents running %s; %s", name, e.o.CompareBinary,
		netfilterNote(ctx, "host 1", l.Hosts()[0].Netns))
	return p, setup, [][2]string{{"a", "o"}, {"o", "b"}}, nil
}
