package main

import (
	"context"
	"fmt"
)

// addCompare, with --compare-binary, brings up lab name in mode with
// agents running that binary and adds its path (o), its setup line and the
// pairs that compare it: a/o (this build over that one) and o/b (that one
// over the hand-built path).
func (e *env) addCompare(ctx context.Context, rep *SuiteReport, paths *[]benchPath, pairs *[][2]string, name, mode, label string) error {
	if e.o.CompareBinary == "" {
		return nil
	}
	l, err := e.upLabBinary(ctx, name, mode, e.o.CompareBinary)
	if err != nil {
		return err
	}
	p, err := labPath(l, "o", "flatmesh-compare-binary", label+", --compare-binary")
	if err != nil {
		return err
	}
	*paths, *pairs = append(*paths, p), append(*pairs, [2]string{"a", "o"}, [2]string{"o", "b"})
	rep.Setup = append(rep.Setup, fmt.Sprintf("(o) lab %s: as (a), agents running %s; %s", name, e.o.CompareBinary,
		netfilterNote(ctx, "host 1", l.Hosts()[0].Netns)))
	return nil
}
