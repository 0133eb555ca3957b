-- +goose Up
-- Webhooks (SPEC section 6): a partner's endpoint, and an outbox of the
-- events of its completed commands, written by a trigger on the command
-- ledger in the transaction of the ledger row, so that every path that
-- records a command (a handler's transaction, createCustomer's batched
-- insert, a refusal, a permanent failure) writes its event with it, and no
-- event exists for a command that was rolled back.

-- One endpoint per partner. The signing secret is sealed with AES-256-GCM
-- under WEBHOOK_SECRET_KEY (shared/webhook); the database never holds it in
-- clear. A partner without a row, or with enabled false, gets no events.
CREATE TABLE webhook_endpoints (
    partner_id      bigint PRIMARY KEY REFERENCES partners (id),
    url             text NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    secret_sealed   bytea NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The order a command concerns (a renewal's: its first order), filled from
-- the params by the worker, so that an event names the order even when the
-- command was refused, and the events of one order are delivered in order.
ALTER TABLE command_ledger ADD COLUMN order_id text;

-- The outbox. body is the event as signed and sent, the same bytes on every
-- attempt; event_id makes the webhook-id. A pending event is due at
-- next_attempt_at, which a dispatcher moves forward when it takes the event
-- (its lease) and again when the attempt failed (the back-off). retry_from
-- starts the retry window (the event's making, or its replay).
CREATE TABLE webhook_events (
    id              bigserial PRIMARY KEY,
    event_id        uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    partner_id      bigint NOT NULL,
    order_id        text,
    event_type      text NOT NULL,
    body            text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    retry_from      timestamptz NOT NULL DEFAULT now(),
    last_status     smallint,
    last_error      text,
    delivered_at    timestamptz
);
-- The dispatchers' queue: only the pending events, by when they are due.
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status = 'pending';
-- An event waits for the older pending events of its order.
CREATE INDEX webhook_events_order ON webhook_events (partner_id, order_id, id)
    WHERE status = 'pending' AND order_id IS NOT NULL;
-- Listing and replaying a partner's failed events.
CREATE INDEX webhook_events_partner ON webhook_events (partner_id, occurred_at);
-- Pruning, as for the ledger.
CREATE INDEX webhook_events_occurred ON webhook_events USING brin (occurred_at);

-- The trigger costs a partner without webhooks one primary-key lookup. The
-- event is built by concatenation: the response body is the ledger's JSON,
-- embedded as it is, never parsed, so the trigger has nothing to fail on.
-- +goose StatementBegin
CREATE FUNCTION webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM webhook_endpoints WHERE partner_id = NEW.partner_id AND enabled;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events (partner_id, order_id, event_type, body, occurred_at)
    VALUES (NEW.partner_id, NEW.order_id, 'command.' || NEW.status,
        '{"type":' || to_json('command.' || NEW.status)::text
        || ',"requestId":' || to_json(NEW.request_id)::text
        || ',"method":' || to_json(NEW.method)::text
        || CASE WHEN NEW.order_id IS NULL THEN '' ELSE ',"orderId":' || to_json(NEW.order_id)::text END
        || ',"response":{"status":' || NEW.response_status
        || ',"body":' || convert_from(NEW.response_body, 'UTF8') || '}'
        || ',"occurredAt":' || floor(extract(epoch FROM NEW.completed_at))::bigint || '}',
        NEW.completed_at);
    -- Wakes the dispatchers at commit; one notification per transaction.
    PERFORM pg_notify('webhook_events', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER command_ledger_webhook AFTER INSERT ON command_ledger
    FOR EACH ROW EXECUTE FUNCTION webhook_outbox();

-- +goose Down
DROP TRIGGER command_ledger_webhook ON command_ledger;
DROP FUNCTION webhook_outbox();
DROP TABLE webhook_events;
ALTER TABLE command_ledger DROP COLUMN order_id;
DROP TABLE webhook_endpoints;
