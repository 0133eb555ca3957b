// Package logging builds the JSON slog logger every process writes to stdout.
package logging

import (
	"io"
	"log/slog"
)

// New returns a JSON logger at level, tagged with the process's role.
func New(w io.Writer, level slog.Level, role string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})).With("process", role)
}
