-- +goose Up
CREATE TABLE partners (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id         bigserial PRIMARY KEY,
    partner_id bigint NOT NULL REFERENCES partners (id),
    key_hash   bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- A tenant is a customer the partner created, or the partner's one consumer tenant.
CREATE TABLE tenants (
    id                 bigserial PRIMARY KEY,
    partner_id         bigint NOT NULL REFERENCES partners (id),
    kind               text NOT NULL CHECK (kind IN ('customer', 'consumer')),
    remote_id          text CHECK (remote_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    admin_email        text,
    admin_phone        text,
    admin_display_name text,
    storage_path       text NOT NULL,
    request_fp         text,
    is_active          boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'customer') = (remote_id IS NOT NULL AND admin_email IS NOT NULL)),
    UNIQUE (partner_id, remote_id)
);
CREATE UNIQUE INDEX tenants_one_consumer ON tenants (partner_id) WHERE kind = 'consumer';

-- Order and renewal ids share one namespace per partner.
CREATE TABLE order_ids (
    partner_id bigint NOT NULL REFERENCES partners (id),
    remote_id  text NOT NULL CHECK (remote_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    kind       text NOT NULL CHECK (kind IN ('order', 'renewal')),
    PRIMARY KEY (partner_id, remote_id),
    UNIQUE (partner_id, remote_id, kind)
);

CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    partner_id  bigint NOT NULL,
    remote_id   text NOT NULL,
    kind        text NOT NULL DEFAULT 'order' CHECK (kind = 'order'),
    tenant_id   bigint NOT NULL REFERENCES tenants (id),
    product     text NOT NULL CHECK (product IN ('oo-lite', 'oo-std', 'oo-ent', 'erp-std', 'erp-admin', 'erp-lim')),
    licenses    integer NOT NULL CHECK (licenses BETWEEN 1 AND 100000),
    duration    text NOT NULL CHECK (duration IN ('monthly', 'yearly')),
    status      text NOT NULL CHECK (status IN ('active', 'suspended', 'cancelled')),
    term_start  timestamptz NOT NULL,
    term_end    timestamptz NOT NULL,
    request_fp  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (term_end > term_start),
    UNIQUE (partner_id, remote_id),
    FOREIGN KEY (partner_id, remote_id, kind) REFERENCES order_ids (partner_id, remote_id, kind)
);
CREATE INDEX orders_tenant ON orders (tenant_id);

CREATE TABLE renewals (
    id          bigserial PRIMARY KEY,
    partner_id  bigint NOT NULL,
    remote_id   text NOT NULL,
    kind        text NOT NULL DEFAULT 'renewal' CHECK (kind = 'renewal'),
    order_id    bigint NOT NULL REFERENCES orders (id),
    term_start  timestamptz NOT NULL,
    term_end    timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (term_end > term_start),
    UNIQUE (partner_id, remote_id),
    FOREIGN KEY (partner_id, remote_id, kind) REFERENCES order_ids (partner_id, remote_id, kind)
);
CREATE INDEX renewals_order ON renewals (order_id, term_start);

CREATE TABLE users (
    id               bigserial PRIMARY KEY,
    tenant_id        bigint NOT NULL REFERENCES tenants (id),
    email            text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    display_name     text NOT NULL DEFAULT '',
    request_fp       text NOT NULL,
    is_active        boolean NOT NULL DEFAULT true,
    reset_token_hash bytea CHECK (reset_token_hash IS NULL OR length(reset_token_hash) = 32),
    reset_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, email)
);

-- +goose Down
DROP TABLE users;
DROP TABLE renewals;
DROP TABLE orders;
DROP TABLE order_ids;
DROP TABLE tenants;
DROP TABLE api_keys;
DROP TABLE partners;
