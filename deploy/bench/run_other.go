//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
)

// run: the bench is made of Linux network namespaces.
func run(context.Context, options, io.Writer) (*Report, error) {
	return nil, errors.New("the bench needs Linux network namespaces")
}
