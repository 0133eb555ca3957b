-- +goose Up
-- A customer's "id" in the API is its number among the partner's customers,
-- not the tenants' primary key: the key comes from one sequence shared by all
-- partners, so the gaps between a partner's ids counted the other partners'
-- customers. The primary key stays internal (orders reference it).
--
-- partner_counters holds the last number given to each partner's customers.
-- An insert takes the numbers it needs by updating the partner's row in the
-- same statement, so the row lock orders the inserts of one partner and a
-- rolled-back insert gives its numbers back.
CREATE TABLE partner_counters (
    partner_id           bigint PRIMARY KEY REFERENCES partners (id),
    last_customer_number bigint NOT NULL CHECK (last_customer_number >= 0)
);

ALTER TABLE tenants ADD COLUMN customer_number bigint;

-- Customers created before keep the id partners were given and may have
-- stored; each partner's numbering goes on after its highest.
UPDATE tenants SET customer_number = id WHERE kind = 'customer';
INSERT INTO partner_counters (partner_id, last_customer_number)
    SELECT partner_id, max(customer_number) FROM tenants WHERE kind = 'customer' GROUP BY partner_id;

ALTER TABLE tenants
    ADD CONSTRAINT tenants_customer_number CHECK ((kind = 'customer') = (customer_number IS NOT NULL)),
    ADD CONSTRAINT tenants_customer_number_positive CHECK (customer_number > 0),
    ADD CONSTRAINT tenants_partner_customer_number UNIQUE (partner_id, customer_number);

-- +goose Down
ALTER TABLE tenants DROP COLUMN customer_number;
DROP TABLE partner_counters;
