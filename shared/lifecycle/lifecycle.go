// Package lifecycle tears a process down in the reverse order it started:
// each part is pushed on a stack once it is open, and at the end the stack is
// closed last-first, so that every part is closed while what it uses is still
// open. Closing runs under one hard time limit and returns one error that
// joins every step's failure.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Closers is a stack of teardown steps. The zero value is an empty stack,
// ready to use; it is not safe for concurrent use.
type Closers struct {
	steps []step
}

type step struct {
	name string
	stop func(context.Context) error
}

// Push adds a step that Close runs before every step pushed earlier. The name
// says in errors which step failed.
func (c *Closers) Push(name string, stop func(context.Context) error) {
	c.steps = append(c.steps, step{name: name, stop: stop})
}

// Close runs the steps one at a time, the last pushed first, under one
// context that ends after timeout, and returns their errors joined, each
// prefixed with its step's name.
//
// The limit is hard, because a process that cannot stop in time is killed
// with nothing logged: a step still running when the time is up is no longer
// waited for, and the steps after it are not run; both are reported with the
// context's error. Close empties the stack, so a second call returns nil.
func (c *Closers) Close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	steps := c.steps
	c.steps = nil
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := run(ctx, steps[i].stop); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", steps[i].name, err))
		}
	}
	return errors.Join(errs...)
}

// run runs stop and waits for it to return or for ctx to end, whichever
// comes first; stop is not started once ctx has ended.
func run(ctx context.Context, stop func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("not run: %w", err)
	}
	done := make(chan error, 1) // buffered: a step left behind must not block forever
	go func() { done <- stop(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("still running: %w", ctx.Err())
	}
}

// NoError adapts a teardown that takes no context and cannot fail, such as
// pgxpool.Pool.Close.
func NoError(stop func()) func(context.Context) error {
	return func(context.Context) error {
		stop()
		return nil
	}
}

// NoContext adapts a teardown that takes no context, such as
// redis.Client.Close.
func NoContext(stop func() error) func(context.Context) error {
	return func(context.Context) error { return stop() }
}
