package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// retry runs op until it succeeds, returns an error wrapped by
// backoff.Permanent, ctx ends or s.wait() has passed; what names the server
// in messages. op learns which attempt it is (1, 2, ...), so that a step that
// may have succeeded before its answer was lost can tell "already done" from
// a conflict.
func (s Servers) retry(ctx context.Context, what string, op func(ctx context.Context, attempt int) error) error {
	return retryFor(ctx, s.wait(), 100*time.Millisecond, s.logf, what, op)
}

// retryFor is retry within wait, the first pause being first and none
// longer than ten times that (or 2s); logf, when set, is told of the first
// failure.
func retryFor(ctx context.Context, wait, first time.Duration, logf func(string, ...any), what string,
	op func(ctx context.Context, attempt int) error) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(first),
		backoff.WithMaxInterval(min(10*first, 2*time.Second)),
		backoff.WithMaxElapsedTime(0)) // ctx bounds the whole
	start := time.Now()
	attempt := 0
	var last error
	err := backoff.RetryNotify(func() error {
		attempt++
		last = op(ctx, attempt)
		return last
	}, backoff.WithContext(b, ctx), func(err error, _ time.Duration) {
		if attempt == 1 && logf != nil {
			logf("testenv: waiting up to %s for %s: %v", wait, what, err)
		}
	})
	switch {
	case err == nil:
		return nil
	case isPermanent(last):
		return fmt.Errorf("%s: %w", what, err)
	case last != nil && !errors.Is(last, err):
		err = fmt.Errorf("%w; last error: %w", err, last)
	}
	return fmt.Errorf("%s: no success in %s (%d attempts): %w", what, time.Since(start).Round(100*time.Millisecond), attempt, err)
}

func isPermanent(err error) bool {
	var p *backoff.PermanentError
	return errors.As(err, &p)
}
