package provision

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/reads"
	"github.com/oneoffice/provisioner/shared/store"
)

// ResetTokenTTL is how long a password reset token stays valid.
const ResetTokenTTL = 24 * time.Hour

// consumerTenant returns the partner's consumer tenant, creating it (and its
// storage, but for a test partner) on first use.
func (s *Service) consumerTenant(ctx context.Context, tx pgx.Tx, c *call) (int64, error) {
	partner := c.partner
	rel := tenantPath(partner, "consumer")
	uri := storageURI(rel)
	if c.test() {
		uri = noStorage
	}
	var id int64
	err := store.NoRows(tx.QueryRow(ctx, `INSERT INTO tenants (partner_id, kind, name, storage_path)
		VALUES ($1, 'consumer', 'Consumers', $2)
		ON CONFLICT (partner_id) WHERE kind = 'consumer' DO NOTHING RETURNING id`, partner, uri).Scan(&id))
	if errors.Is(err, store.ErrNotFound) {
		err = tx.QueryRow(ctx, `SELECT id FROM tenants WHERE partner_id = $1 AND kind = 'consumer'`, partner).Scan(&id)
		return id, store.NoRows(err)
	}
	if err != nil || c.test() {
		return id, err
	}
	return id, s.makeStorage(rel)
}

func (s *Service) createUser(ctx context.Context, tx pgx.Tx, c *call, p *protocol.CreateUserParams) (any, error) {
	tenant, err := s.consumerTenant(ctx, tx, c)
	if err != nil {
		return nil, err
	}
	u := reads.User{Email: p.Email, IsActive: true}
	var created time.Time
	var fp string
	// A separate SELECT after an insert that did nothing sees the row that a
	// racing transaction committed meanwhile.
	err = store.NoRows(tx.QueryRow(ctx, `INSERT INTO users (tenant_id, email, display_name, request_fp, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, email) DO NOTHING
		RETURNING display_name, created_at, request_fp`,
		tenant, p.Email, p.DisplayName, c.fp, c.now).Scan(&u.DisplayName, &created, &fp))
	if errors.Is(err, store.ErrNotFound) {
		err = store.NoRows(tx.QueryRow(ctx, `SELECT display_name, created_at, request_fp FROM users
			WHERE tenant_id = $1 AND email = $2`, tenant, p.Email).Scan(&u.DisplayName, &created, &fp))
	}
	if err != nil {
		return nil, err
	}
	if fp != c.fp {
		return nil, conflict(protocol.CodeAlreadyExists, "params.email",
			fmt.Sprintf("user %q already exists with other params", p.Email))
	}
	u.CreatedAt = created.Unix()
	return u, nil
}

// deleteUser deletes the user and ends the derived key user:<email> that
// created it (SPEC section 3): the ledger stops answering for the key in this
// transaction, and the worker deletes its Redis record after the commit, so
// the same createUser again creates the user again.
func (s *Service) deleteUser(ctx context.Context, tx pgx.Tx, c *call, p *protocol.UserRef) (any, error) {
	email := p.Email
	_, err := tx.Exec(ctx, `DELETE FROM users WHERE email = $2 AND tenant_id =
		(SELECT id FROM tenants WHERE partner_id = $1 AND kind = 'consumer')`, c.partner, email)
	if err != nil {
		return nil, err
	}
	key := idempotency.Key(c.partner, protocol.CreateUserDef.Key(&protocol.CreateUserParams{Email: email}), true)
	if err := endKey(ctx, tx, c.partner, key); err != nil {
		return nil, err
	}
	c.ended = append(c.ended, key)
	return struct {
		Email   string `json:"email"`
		Deleted bool   `json:"deleted"`
	}{email, true}, nil
}

func (s *Service) resetUser(ctx context.Context, tx pgx.Tx, c *call, p *protocol.UserRef) (any, error) {
	email := p.Email
	var raw [32]byte
	// crypto/rand.Read never returns an error: it crashes the program instead
	// when the system's random source fails.
	rand.Read(raw[:])
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	hash := sha256.Sum256([]byte(token))
	expires := c.now.Add(ResetTokenTTL)
	tag, err := tx.Exec(ctx, `UPDATE users SET reset_token_hash = $3, reset_expires_at = $4
		WHERE email = $2 AND tenant_id = (SELECT id FROM tenants WHERE partner_id = $1 AND kind = 'consumer')`,
		c.partner, email, hash[:], expires)
	if err != nil {
		return nil, err
	}
	if tag.RowsAffected() == 0 {
		return nil, protocol.NewError(http.StatusNotFound, protocol.CodeUserNotFound, "params.email",
			fmt.Sprintf("user %q does not exist", email))
	}
	return resetAnswer{email, token, expires.Unix()}, nil
}

// resetAnswer is resetUser's response. Its token is stored only as a hash, so
// the ledger records the answer without it: a redelivered resetUser answers
// the email and expiry, and the token the partner received stays the valid one.
type resetAnswer struct {
	Email      string `json:"email"`
	ResetToken string `json:"resetToken"`
	ExpiresAt  int64  `json:"expiresAt"`
}

func (a resetAnswer) recorded() any {
	return struct {
		Email     string `json:"email"`
		ExpiresAt int64  `json:"expiresAt"`
	}{a.Email, a.ExpiresAt}
}
