-- +goose Up
-- Event history and replay for partners (SPEC section 6; listEvents,
-- replayEvent): every delivery attempt recorded, the request id of each
-- event kept for the listEvents filter, and an index in the list's order.

-- One row per attempt a dispatcher made: when it started, the endpoint's
-- HTTP status (null when none came: refused, unreachable, timed out), how
-- long it took, and why it failed. Deleted with its event (pruning).
CREATE TABLE webhook_attempts (
    id          bigserial PRIMARY KEY,
    event_pk    bigint NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    status      smallint,
    duration_ms integer NOT NULL CHECK (duration_ms >= 0),
    error       text
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_pk, at, id);

-- The call the event tells of; null for the events made before this column.
ALTER TABLE webhook_events ADD COLUMN request_id text;
-- How often the partner replayed the event: a dispatcher records the outcome
-- of its attempt only while the count is the one it claimed the event with,
-- so a replay during an attempt in flight is sent again after it, not lost.
ALTER TABLE webhook_events ADD COLUMN replays integer NOT NULL DEFAULT 0;
-- listEvents goes by (occurred_at, event_id) within the partner, or within
-- the partner's request.
CREATE INDEX webhook_events_partner_list ON webhook_events (partner_id, occurred_at, event_id);
CREATE INDEX webhook_events_partner_request ON webhook_events (partner_id, request_id);
DROP INDEX webhook_events_partner;

-- The outbox trigger of 00006, also filling request_id; a replayEvent
-- command makes no event of its own (its effect is a delivery).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.method = 'replayEvent' THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM webhook_endpoints WHERE partner_id = NEW.partner_id AND enabled;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events (partner_id, order_id, request_id, event_type, body, occurred_at)
    VALUES (NEW.partner_id, NEW.order_id, NEW.request_id, 'command.' || NEW.status,
        '{"type":' || to_json('command.' || NEW.status)::text
        || ',"requestId":' || to_json(NEW.request_id)::text
        || ',"method":' || to_json(NEW.method)::text
        || CASE WHEN NEW.order_id IS NULL THEN '' ELSE ',"orderId":' || to_json(NEW.order_id)::text END
        || ',"response":{"status":' || NEW.response_status
        || ',"body":' || convert_from(NEW.response_body, 'UTF8') || '}'
        || ',"occurredAt":' || floor(extract(epoch FROM NEW.completed_at))::bigint || '}',
        NEW.completed_at);
    PERFORM pg_notify('webhook_events', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
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
    PERFORM pg_notify('webhook_events', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE INDEX webhook_events_partner ON webhook_events (partner_id, occurred_at);
DROP INDEX webhook_events_partner_request;
DROP INDEX webhook_events_partner_list;
ALTER TABLE webhook_events DROP COLUMN replays;
ALTER TABLE webhook_events DROP COLUMN request_id;
DROP TABLE webhook_attempts;
