-- +goose Up
-- Sandbox (SPEC section 6): a partner's test data belongs to a partner row of
-- its own, its test partner, linked to the live one and named the same. Every
-- query is scoped by partner, so test and live data are apart both ways.
ALTER TABLE partners ADD COLUMN live_partner_id bigint UNIQUE REFERENCES partners (id);
ALTER TABLE partners ADD COLUMN livemode boolean GENERATED ALWAYS AS (live_partner_id IS NULL) STORED;
ALTER TABLE partners DROP CONSTRAINT partners_name_key;
CREATE UNIQUE INDEX partners_live_name ON partners (name) WHERE live_partner_id IS NULL;

-- A key's prefix is what operators see of it (keys list, the audit trail);
-- read_only keys may call only the methods that change nothing; a rolled key
-- keeps working until expires_at. last_used_at is kept to the minute.
ALTER TABLE api_keys ADD COLUMN prefix text NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN read_only boolean NOT NULL DEFAULT false;
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
CREATE INDEX api_keys_partner ON api_keys (partner_id, created_at);

-- Every admin action: who (the operating-system user of the CLI, or the
-- prefix of the key that acted), what, on whom; written in the transaction
-- of the change.
CREATE TABLE admin_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    action     text NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    partner_id bigint REFERENCES partners (id),
    target     text NOT NULL DEFAULT '',
    detail     text NOT NULL DEFAULT ''
);
CREATE INDEX admin_audit_at ON admin_audit (at);

-- +goose Down
-- Refused while test partners own data: remove their tenants and keys first.
DROP TABLE admin_audit;
DROP INDEX api_keys_partner;
ALTER TABLE api_keys DROP COLUMN last_used_at, DROP COLUMN expires_at, DROP COLUMN read_only, DROP COLUMN prefix;
DELETE FROM partners WHERE live_partner_id IS NOT NULL;
DROP INDEX partners_live_name;
ALTER TABLE partners ADD CONSTRAINT partners_name_key UNIQUE (name);
ALTER TABLE partners DROP COLUMN livemode, DROP COLUMN live_partner_id;
