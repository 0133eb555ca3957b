package reads

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// User is a user of the partner's consumer tenant.
type User struct {
	Email       string `json:"email"`
	DisplayName string `json:"displayName"`
	CreatedAt   int64  `json:"createdAt"`
	IsActive    bool   `json:"isActive"`
}

// listUsers lists the users of the partner's consumer tenant by (creation
// time, email); a partner without one has none.
func (r *Reader) listUsers(ctx context.Context, q *query, p *protocol.ListUsersParams) (any, error) {
	after, err := r.decodeCursor(ctx, q, p.Cursor)
	if err != nil {
		return nil, err
	}
	var w where
	w.add("u.tenant_id = (SELECT id FROM tenants WHERE partner_id = ? AND kind = 'consumer')", q.partner)
	if after != nil {
		w.add("(u.created_at, u.email) > (?, ?)", time.UnixMicro(after.N), after.S)
	}
	limit := pageLimit(p.Limit)
	rows, err := r.db.Query(ctx, `SELECT u.email, u.display_name, u.created_at, u.is_active FROM users u
		WHERE `+w.String()+` ORDER BY u.created_at, u.email LIMIT `+w.limitArg(limit), w.args...)
	if err != nil {
		return nil, err
	}
	type userRow struct {
		User
		created time.Time
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userRow, error) {
		var u userRow
		err := row.Scan(&u.Email, &u.DisplayName, &u.created, &u.IsActive)
		u.CreatedAt = u.created.Unix()
		return u, err
	})
	if err != nil {
		return nil, err
	}
	pg, err := paginate(ctx, r, q, list, limit, func(u userRow) position {
		return position{N: u.created.UnixMicro(), S: u.Email}
	})
	if err != nil {
		return nil, err
	}
	out := Page[User]{Data: make([]User, len(pg.Data)), NextCursor: pg.NextCursor}
	for i, u := range pg.Data {
		out.Data[i] = u.User
	}
	return out, nil
}
