-- +goose Up
-- The secret a partner signs its calls with (gateway/internal/signing); NULL
-- for a partner that does not sign. It is kept as issued, not hashed, because
-- verifying an HMAC needs it in clear.
ALTER TABLE partners
    ADD COLUMN signing_secret text CHECK (signing_secret IS NULL OR length(signing_secret) BETWEEN 32 AND 200);

-- +goose Down
ALTER TABLE partners DROP COLUMN signing_secret;
