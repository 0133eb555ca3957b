package reads

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
)

// Customer is the createCustomer/getCustomer response (SPEC section 2).
type Customer struct {
	ID        int64          `json:"id"`
	RemoteID  string         `json:"remoteId"`
	Name      string         `json:"name"`
	Partner   int64          `json:"partner"`
	CreatedAt int64          `json:"createdAt"`
	IsActive  bool           `json:"isActive"`
	Admin     protocol.Admin `json:"admin"`
}

// CustomerColumns read a customer as the API shows it, and the fingerprint of
// the call that created it: its id is its number among the partner's
// customers, never the tenants' primary key, which counts every partner's
// tenants.
const CustomerColumns = `customer_number, remote_id, name, partner_id, created_at, is_active,
	admin_email, coalesce(admin_phone, ''), coalesce(admin_display_name, ''), request_fp`

// ScanCustomer reads a row of CustomerColumns: the customer and the
// fingerprint of its creation; store.ErrNotFound when there is none.
func ScanCustomer(row pgx.Row) (Customer, string, error) {
	var c Customer
	var created time.Time
	var fp *string
	err := row.Scan(&c.ID, &c.RemoteID, &c.Name, &c.Partner, &created, &c.IsActive,
		&c.Admin.Email, &c.Admin.Phone, &c.Admin.DisplayName, &fp)
	c.CreatedAt = created.Unix()
	if fp == nil {
		return c, "", noRows(err)
	}
	return c, *fp, noRows(err)
}

func (r *Reader) getCustomer(ctx context.Context, q *query, p *protocol.CustomerRef) (any, error) {
	cust, _, err := ScanCustomer(r.db.QueryRow(ctx, `SELECT `+CustomerColumns+`
		FROM tenants WHERE partner_id = $1 AND remote_id = $2`, q.partner, p.ID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(protocol.CodeCustomerNotFound, "params.id", "customer", p.ID)
	}
	return cust, err
}

// listCustomers lists the partner's customers by their number. A customer
// does not change once created, so updatedSince compares its creation.
func (r *Reader) listCustomers(ctx context.Context, q *query, p *protocol.ListCustomersParams) (any, error) {
	filters := []any{p.UpdatedSince}
	after, err := r.decodeCursor(ctx, q, p.Cursor, filters...)
	if err != nil {
		return nil, err
	}
	var w where
	w.add("partner_id = ?", q.partner)
	w.add("customer_number > ?", int64(0))
	if after != nil {
		w.args[1] = after.N
	}
	if p.UpdatedSince != nil {
		w.add("created_at >= ?", time.Unix(int64(*p.UpdatedSince), 0))
	}
	limit := pageLimit(p.Limit)
	rows, err := r.db.Query(ctx, `SELECT `+CustomerColumns+` FROM tenants WHERE `+w.String()+`
		ORDER BY customer_number LIMIT `+w.limitArg(limit), w.args...)
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Customer, error) {
		c, _, err := ScanCustomer(row)
		return c, err
	})
	if err != nil {
		return nil, err
	}
	return paginate(ctx, r, q, list, limit, func(c Customer) position { return position{N: c.ID} }, filters...)
}
