package store

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// errNoRows is what NoRows returns for the driver's bare no-rows error, built
// once: a lookup that finds nothing is a normal outcome on hot paths (an insert
// that did nothing, an unknown key), so it should not allocate.
var errNoRows = fmt.Errorf("%w: %w", ErrNotFound, pgx.ErrNoRows)

// NoRows returns err with the driver's no-rows error turned into ErrNotFound,
// so that callers test errors.Is(err, ErrNotFound) and need not know the
// driver. Any other error, nil included, is returned as it is.
func NoRows(err error) error {
	switch {
	case err == nil:
		return nil
	case err == pgx.ErrNoRows:
		return errNoRows
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}
