-- +goose Up
-- The reads of reconciliation (shared/reads): the key that signs list
-- cursors, and indexes in the order of each list.

-- One key for every process: a cursor made by one gateway is good on any
-- other. 32 bytes hashed from two random UUIDs (244 random bits).
CREATE TABLE read_cursor_key (
    one    boolean PRIMARY KEY DEFAULT true CHECK (one),
    secret bytea NOT NULL CHECK (length(secret) = 32)
);
INSERT INTO read_cursor_key (secret)
    VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')));

-- listOrders goes by (created_at, remote_id) within the partner, or within
-- the customer (which also serves what orders_tenant served); updatedSince
-- finds the recently changed orders.
CREATE INDEX orders_partner_created ON orders (partner_id, created_at, remote_id);
CREATE INDEX orders_tenant_created ON orders (tenant_id, created_at, remote_id);
DROP INDEX orders_tenant;
CREATE INDEX orders_partner_updated ON orders (partner_id, updated_at);
-- listUsers goes by (created_at, email) within the consumer tenant.
CREATE INDEX users_tenant_created ON users (tenant_id, created_at, email);
-- listRequests goes by (created_at, command_id) within the partner.
CREATE INDEX command_ledger_partner_created ON command_ledger (partner_id, created_at, command_id);
-- listCustomers goes by customer_number within the partner: the unique
-- constraint tenants_partner_customer_number serves it.

-- +goose Down
DROP INDEX command_ledger_partner_created;
DROP INDEX users_tenant_created;
DROP INDEX orders_partner_updated;
CREATE INDEX orders_tenant ON orders (tenant_id);
DROP INDEX orders_tenant_created;
DROP INDEX orders_partner_created;
DROP TABLE read_cursor_key;
