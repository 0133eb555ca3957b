package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/reads"
)

// createCustomer makes the tenant's storage first, then inserts its row in one
// statement, shared with the other createCustomer commands that reach the
// database at the same time, which writes their ledger rows too: a tenant row
// never exists without its storage, and a directory left by a failed insert
// is reused by the retry. A command that statement did not insert (its id was
// taken: the same call again, a redelivery, or a clash) or could not settle
// runs again alone in the command's transaction (tx), recorded by runCommand.
func (s *Service) createCustomer(ctx context.Context, tx pgx.Tx, c *call, p *protocol.CreateCustomerParams) (any, error) {
	rel, uri := tenantPath(c.partner, "c-"+p.ID), noStorage
	if !c.test() {
		if err := s.makeStorage(rel); err != nil {
			return nil, err
		}
		uri = storageURI(rel)
	}
	made := time.Now()
	n := newCustomers.Get().(*newCustomer)
	defer newCustomers.Put(n)
	n.partner, n.params, n.path, n.fp, n.now, n.cmd = c.partner, p, uri, c.fp, c.now, c.cmd
	if tx != nil && c.taken {
		return s.existingCustomer(ctx, tx, c, p.ID)
	}
	if tx != nil {
		n.suffix = "" // the ledger row is runCommand's
		got, err := insertCustomers(ctx, tx, []*newCustomer{n}, false)
		if cust, ok := got[c.cmd.CommandID]; ok || err != nil {
			return cust.Customer, err
		}
		return s.existingCustomer(ctx, tx, c, p.ID)
	}
	var err error
	if n.suffix, err = responseSuffix(n); err != nil {
		return nil, err
	}
	s.customers.insert(ctx, n)
	switch {
	case n.err == nil && n.inserted:
		if err := s.outlivedGrace(c, rel, made); err != nil {
			return nil, err
		}
		return rawBody(n.body), nil
	case n.err == nil:
		// The id was taken: answered from the existing customer, without
		// a second insert, which would take a number for nothing.
		c.taken = true
		return nil, errInTx
	case errors.Is(n.err, errBatchFailed), !IsTransient(n.err):
		// A permanent failure of a statement of one row (a ledger conflict,
		// a row the database refuses) is told apart alone, in a transaction.
		return nil, errInTx
	}
	return nil, n.err
}

// existingCustomer answers a create whose id is taken: the same call again
// gets the customer, another one 409.
func (s *Service) existingCustomer(ctx context.Context, q querier, c *call, id string) (reads.Customer, error) {
	cust, fp, err := reads.ScanCustomer(q.QueryRow(ctx, `SELECT `+reads.CustomerColumns+`
		FROM tenants WHERE partner_id = $1 AND remote_id = $2`, c.partner, id))
	if err != nil {
		return cust, err
	}
	if fp != c.fp {
		return cust, conflict(protocol.CodeAlreadyExists, "params.id",
			fmt.Sprintf("customer %q already exists with other params", id))
	}
	return cust, nil
}

// outlivedGrace makes the tenant's directory again when its insert took so long
// after makeStorage that the sweeper may have taken the directory for an
// orphan meanwhile. A failure is retried: the retry finds the row, makes the
// directory and answers from the ledger.
func (s *Service) outlivedGrace(c *call, rel string, made time.Time) error {
	if c.test() || time.Since(made) < s.cfg.OrphanGrace/2 {
		return nil
	}
	return s.makeStorage(rel)
}
