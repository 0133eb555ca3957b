package reads

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
)

// Order is the response of every order method (SPEC section 2). ID is the
// partner's order id; renewals are listed oldest first.
type Order struct {
	ID        string    `json:"id"`
	Customer  string    `json:"customer"`
	Product   string    `json:"product"`
	Licenses  int       `json:"licenses"`
	Duration  string    `json:"duration"`
	Status    string    `json:"status"`
	TermStart int64     `json:"termStart"`
	TermEnd   int64     `json:"termEnd"`
	CreatedAt int64     `json:"createdAt"`
	UpdatedAt int64     `json:"updatedAt"`
	Renewals  []Renewal `json:"renewals"`
}

// Renewal is one renewal term of an order.
type Renewal struct {
	ID        string `json:"id"`
	TermStart int64  `json:"termStart"`
	TermEnd   int64  `json:"termEnd"`
	CreatedAt int64  `json:"createdAt"`
}

// OrderRow is an order as stored, before the view rules apply.
type OrderRow struct {
	PK                          int64
	Order                       Order
	Status                      string
	TermStart, TermEnd, Created time.Time
	Updated                     time.Time
	FP                          string
}

// orderColumns read an order row with its renewals (ScanOrder).
const orderColumns = `o.id, o.remote_id, t.remote_id, o.product, o.licenses, o.duration,
	o.status, o.term_start, o.term_end, o.created_at, o.updated_at, o.request_fp,
	coalesce((SELECT json_agg(json_build_object('id', r.remote_id,
		'termStart', floor(extract(epoch FROM r.term_start))::bigint,
		'termEnd', floor(extract(epoch FROM r.term_end))::bigint,
		'createdAt', floor(extract(epoch FROM r.created_at))::bigint) ORDER BY r.term_start, r.id)
		FROM renewals r WHERE r.order_id = o.id), '[]')
	FROM orders o JOIN tenants t ON t.id = o.tenant_id`

// OrderByID reads the partner's ($1) first order by its id ($2).
const OrderByID = `SELECT ` + orderColumns + ` WHERE o.partner_id = $1 AND o.remote_id = $2`

// ScanOrder reads a row of orderColumns; store.ErrNotFound when there is none.
func ScanOrder(row pgx.Row) (*OrderRow, error) {
	r := new(OrderRow)
	var renewals []byte
	o := &r.Order
	err := row.Scan(&r.PK, &o.ID, &o.Customer, &o.Product, &o.Licenses, &o.Duration,
		&r.Status, &r.TermStart, &r.TermEnd, &r.Created, &r.Updated, &r.FP, &renewals)
	if err != nil {
		return nil, noRows(err)
	}
	if err := json.Unmarshal(renewals, &o.Renewals); err != nil {
		return nil, fmt.Errorf("decode renewals: %w", err)
	}
	return r, nil
}

// View applies the rules that depend on the clock: termStart is the start of
// the term in force now, and an active or suspended order past its termEnd is
// expired.
func (r *OrderRow) View(now time.Time) Order {
	o := r.Order
	o.Status = r.Status
	if r.Status != "cancelled" && now.After(r.TermEnd) {
		o.Status = "expired"
	}
	o.TermStart = r.TermStart.Unix()
	for _, rn := range o.Renewals {
		if rn.TermStart <= now.Unix() && rn.TermStart > o.TermStart {
			o.TermStart = rn.TermStart
		}
	}
	o.TermEnd = r.TermEnd.Unix()
	o.CreatedAt = r.Created.Unix()
	o.UpdatedAt = r.Updated.Unix()
	return o
}

// LoadOrder reads partner's first order by its id, locking it when lock is
// set (q is then the command's transaction). A renewal id gets
// not_a_first_order naming field unless resolve is set, in which case it
// resolves to its first order; an unknown id gets order_not_found.
func LoadOrder(ctx context.Context, q DBRow, partner int64, field, id string, lock, resolve bool) (*OrderRow, error) {
	sql := OrderByID
	if lock {
		sql += " FOR UPDATE OF o"
	}
	r, err := ScanOrder(q.QueryRow(ctx, sql, partner, id))
	if !errors.Is(err, store.ErrNotFound) {
		return r, err
	}
	var parent string
	err = noRows(q.QueryRow(ctx, `SELECT o.remote_id FROM renewals r JOIN orders o ON o.id = r.order_id
		WHERE r.partner_id = $1 AND r.remote_id = $2`, partner, id).Scan(&parent))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, notFound(protocol.CodeOrderNotFound, field, "order", id)
	case err != nil:
		return nil, err
	case resolve:
		return LoadOrder(ctx, q, partner, field, parent, lock, false)
	}
	return nil, protocol.NewError(http.StatusUnprocessableEntity, protocol.CodeNotAFirstOrder, field,
		fmt.Sprintf("%s %q is a renewal of order %q; name the first order", field, id, parent))
}

// DBRow is what LoadOrder needs: a pool or a transaction.
type DBRow interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (r *Reader) getOrder(ctx context.Context, q *query, p *protocol.OrderRef) (any, error) {
	o, err := LoadOrder(ctx, r.db, q.partner, "params.id", p.ID, false, true)
	if err != nil {
		return nil, err
	}
	return o.View(q.now), nil
}

// Orders is the getOrders response: the orders found, in the order of the
// ids asked, each once (a renewal id gives its first order, as getOrder
// does), and the ids that name no order of the partner.
type Orders struct {
	Data    []Order  `json:"data"`
	Missing []string `json:"missing"`
}

func (r *Reader) getOrders(ctx context.Context, q *query, p *protocol.GetOrdersParams) (any, error) {
	byID, err := r.ordersByID(ctx, q, p.IDs)
	if err != nil {
		return nil, err
	}
	// An id that is no first order's may be a renewal's: its first order
	// answers for it.
	first := make(map[string]string, len(p.IDs))
	var rest []string
	for _, id := range p.IDs {
		if byID[id] != nil {
			first[id] = id
		} else {
			rest = append(rest, id)
		}
	}
	if len(rest) > 0 {
		rows, err := r.db.Query(ctx, `SELECT rn.remote_id, o.remote_id FROM renewals rn JOIN orders o ON o.id = rn.order_id
			WHERE rn.partner_id = $1 AND rn.remote_id = ANY($2)`, q.partner, rest)
		if err != nil {
			return nil, err
		}
		var renewal, parent string
		var parents []string
		if _, err := pgx.ForEachRow(rows, []any{&renewal, &parent}, func() error {
			first[renewal] = parent
			if byID[parent] == nil {
				parents = append(parents, parent)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		more, err := r.ordersByID(ctx, q, parents)
		if err != nil {
			return nil, err
		}
		maps.Copy(byID, more)
	}
	res := Orders{Data: []Order{}, Missing: []string{}}
	given := make(map[string]bool, len(byID))
	for _, asked := range p.IDs {
		o := byID[first[asked]]
		switch {
		case o == nil:
			res.Missing = append(res.Missing, asked)
		case !given[o.Order.ID]:
			given[o.Order.ID] = true
			res.Data = append(res.Data, o.View(q.now))
		}
	}
	return res, nil
}

// ordersByID reads the partner's first orders of ids, by id.
func (r *Reader) ordersByID(ctx context.Context, q *query, ids []string) (map[string]*OrderRow, error) {
	byID := make(map[string]*OrderRow, len(ids))
	if len(ids) == 0 {
		return byID, nil
	}
	rows, err := r.db.Query(ctx, `SELECT `+orderColumns+` WHERE o.partner_id = $1 AND o.remote_id = ANY($2)`, q.partner, ids)
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*OrderRow, error) { return ScanOrder(row) })
	for _, o := range list {
		byID[o.Order.ID] = o
	}
	return byID, err
}

// listOrders lists the partner's first orders by (creation time, id), a key
// that never changes: an order changed during a walk of the pages is neither
// given twice nor skipped. status compares the status shown (expired: past
// termEnd, not cancelled, at the time of the page).
func (r *Reader) listOrders(ctx context.Context, q *query, p *protocol.ListOrdersParams) (any, error) {
	filters := []any{p.Customer, p.Status, p.UpdatedSince}
	after, err := r.decodeCursor(ctx, q, p.Cursor, filters...)
	if err != nil {
		return nil, err
	}
	var w where
	w.add("o.partner_id = ?", q.partner)
	if p.Customer != nil {
		var tenant int64
		err := noRows(r.db.QueryRow(ctx, `SELECT id FROM tenants WHERE partner_id = $1 AND remote_id = $2`,
			q.partner, *p.Customer).Scan(&tenant))
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFound(protocol.CodeCustomerNotFound, "params.customer", "customer", *p.Customer)
		}
		if err != nil {
			return nil, err
		}
		w.add("o.tenant_id = ?", tenant)
	}
	if p.Status != nil {
		switch *p.Status {
		case "expired":
			w.add("o.status <> 'cancelled' AND o.term_end < ?", q.now)
		case "cancelled":
			w.add("o.status = 'cancelled'")
		default:
			w.add("o.status = ? AND o.term_end >= ?", *p.Status, q.now)
		}
	}
	if p.UpdatedSince != nil {
		w.add("o.updated_at >= ?", time.Unix(int64(*p.UpdatedSince), 0))
	}
	if after != nil {
		w.add("(o.created_at, o.remote_id) > (?, ?)", time.UnixMicro(after.N), after.S)
	}
	limit := pageLimit(p.Limit)
	rows, err := r.db.Query(ctx, `SELECT `+orderColumns+` WHERE `+w.String()+`
		ORDER BY o.created_at, o.remote_id LIMIT `+w.limitArg(limit), w.args...)
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*OrderRow, error) { return ScanOrder(row) })
	if err != nil {
		return nil, err
	}
	pg, err := paginate(ctx, r, q, list, limit, func(o *OrderRow) position {
		return position{N: o.Created.UnixMicro(), S: o.Order.ID}
	}, filters...)
	if err != nil {
		return nil, err
	}
	out := Page[Order]{Data: make([]Order, len(pg.Data)), NextCursor: pg.NextCursor}
	for i, o := range pg.Data {
		out.Data[i] = o.View(q.now)
	}
	return out, nil
}
