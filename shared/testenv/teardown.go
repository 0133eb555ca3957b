package testenv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Teardown is an undo stack for a program that is not a test (tests use
// t.Cleanup): each step is added when what it undoes was made, and Run undoes
// them last first.
type Teardown struct {
	mu    sync.Mutex
	steps []undoStep
}

type undoStep struct {
	what string
	undo func(context.Context) error
}

// Add pushes a step; what names it in errors.
func (td *Teardown) Add(what string, undo func(context.Context) error) {
	td.mu.Lock()
	defer td.mu.Unlock()
	td.steps = append(td.steps, undoStep{what, undo})
}

// Run runs every step, the last added first, all within limit, and returns
// their errors joined. A step is run once: a second Run does only what was
// added since.
func (td *Teardown) Run(limit time.Duration) error {
	td.mu.Lock()
	steps := td.steps
	td.steps = nil
	td.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].undo(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", steps[i].what, err))
		}
	}
	return errors.Join(errs...)
}
