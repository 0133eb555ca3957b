// Package audit is the trail of admin actions (SPEC section 6): who did
// what, on whom, and when, kept in PostgreSQL (table admin_audit). An entry
// is written in the transaction of the change it records, so a change never
// commits without its entry, nor an entry without its change.
package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Execer is what Record writes through: a transaction, usually.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Querier is what List reads through.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Entry is one admin action.
type Entry struct {
	At      time.Time
	Actor   string // the operating-system user of the CLI, or "key:" and a key's prefix
	Action  string // the command, such as "keys create"
	Partner int64  // the partner acted on; 0 for none
	Target  string // what else names the object: a key prefix, a URL, a count
	Detail  string
}

// ErrNoActor: an entry must say who acted.
var ErrNoActor = errors.New("audit: an entry needs an actor")

// Record writes e in the caller's transaction.
func Record(ctx context.Context, tx Execer, e Entry) error {
	if e.Actor == "" {
		return ErrNoActor
	}
	var partner *int64
	if e.Partner != 0 {
		partner = &e.Partner
	}
	_, err := tx.Exec(ctx, `INSERT INTO admin_audit (actor, action, partner_id, target, detail)
		VALUES ($1, $2, $3, $4, $5)`, e.Actor, e.Action, partner, e.Target, e.Detail)
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// Row is an entry as listed, with the partner's name.
type Row struct {
	Entry
	PartnerName string
	Livemode    bool
}

// List returns the entries since from (all with the zero time), oldest first,
// at most limit.
func List(ctx context.Context, db Querier, from time.Time, limit int) ([]Row, error) {
	rows, err := db.Query(ctx, `SELECT a.at, a.actor, a.action, coalesce(a.partner_id, 0), a.target, a.detail,
			coalesce(p.name, ''), coalesce(p.livemode, true)
		FROM admin_audit a LEFT JOIN partners p ON p.id = a.partner_id
		WHERE a.at >= $1 ORDER BY a.at, a.id LIMIT $2`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("audit list: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Row, error) {
		var x Row
		err := r.Scan(&x.At, &x.Actor, &x.Action, &x.Partner, &x.Target, &x.Detail, &x.PartnerName, &x.Livemode)
		return x, err
	})
}

// OSUser names the operating-system user running the process: its login
// name, else $USER, else its uid.
func OSUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return fmt.Sprintf("uid:%d", os.Getuid())
}

// KeyActor names the key that acted, by its prefix only.
func KeyActor(prefix string) string { return "key:" + prefix }
