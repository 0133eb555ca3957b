-- +goose Up
-- The command ledger (a transactional inbox): one row per mutating command a
-- worker completed, written in the transaction of the command's effect, so a
-- redelivered command is answered from its row and changes nothing. Reads
-- write no row.
--
-- command_id is assigned by the gateway, one per call, and travels with the
-- message; a redelivery carries the same one. idem_key is the Redis key of the
-- call's idempotency record while the ledger may still answer for it: it is
-- cleared when the resource a derived key created is deleted, and it is NULL
-- for what the Redis record does not keep either (a refusal under a derived
-- key). status is 'succeeded' for every answered command, a refusal (4xx)
-- included, and 'failed' for a command that failed inside the service (500).
-- response_body is bytea so that it is replayed byte for byte.
--
-- There is no foreign key to partners: it would cost a lookup per command,
-- and the gateway authenticated the partner already.
CREATE TABLE command_ledger (
    partner_id      bigint NOT NULL,
    command_id      text NOT NULL CHECK (length(command_id) BETWEEN 1 AND 128),
    method          text NOT NULL,
    request_fp      text NOT NULL,
    idem_key        text,
    request_id      text NOT NULL,
    trace_id        text,
    status          text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    response_status smallint NOT NULL CHECK (response_status BETWEEN 200 AND 599),
    response_body   bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    completed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, command_id)
);
-- One command answers for a key: a second command under it (Redis lost the
-- record) conflicts here and is answered from the first one's row.
CREATE UNIQUE INDEX command_ledger_idem_key ON command_ledger (partner_id, idem_key) WHERE idem_key IS NOT NULL;
-- getRequest looks a call up by its request id.
CREATE INDEX command_ledger_request ON command_ledger (partner_id, request_id);
-- Rows arrive in time order, so a BRIN index finds the expired ones for
-- pruning at almost no cost per insert.
CREATE INDEX command_ledger_completed ON command_ledger USING brin (completed_at);

-- +goose Down
DROP TABLE command_ledger;
