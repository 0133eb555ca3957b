package reads

import (
	"context"
	"strconv"
	"strings"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// Page is one page of a list: its rows in the list's order and the cursor of
// the next page, null after the last.
type Page[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"nextCursor"`
}

// where is the WHERE clause of a list, built from the filters the call set,
// so that each query the planner sees has only its own conditions.
type where struct {
	conds []string
	args  []any
}

// add appends cond, whose each ? is the next of args.
func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

func (w *where) String() string { return strings.Join(w.conds, " AND ") }

// limitArg appends the LIMIT of a page: one row more than it shows, which
// tells whether a next page exists.
func (w *where) limitArg(limit int) string {
	w.args = append(w.args, limit+1)
	return "$" + strconv.Itoa(len(w.args))
}

// paginate cuts rows (up to limit+1 of them) to a page of limit, with the
// cursor of the next page when there is one.
func paginate[T any](ctx context.Context, r *Reader, q *query, rows []T, limit int, at func(T) position, filters ...any) (Page[T], error) {
	if rows == nil {
		rows = []T{}
	}
	if len(rows) <= limit {
		return Page[T]{Data: rows}, nil
	}
	rows = rows[:limit]
	next, err := r.encodeCursor(ctx, q, at(rows[limit-1]), filters...)
	return Page[T]{Data: rows, NextCursor: next}, err
}

// pageLimit is the call's limit, DefaultPage when it set none.
var pageLimit = protocol.PageLimit
