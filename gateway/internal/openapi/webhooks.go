package openapi

import "github.com/oneoffice/provisioner/shared/webhook"

// Event types of the webhooks (SPEC section 6; the outbox trigger of
// migration 00006_webhooks writes the command events, `webhooks test` the
// ping).
const (
	EventSucceeded = "command.succeeded"
	EventFailed    = "command.failed"
	EventPing      = "ping"
)

func webhookSchemas() map[string]schema {
	return map[string]schema{
		"CommandEvent": {
			"type": "object", "required": []string{"type", "requestId", "method", "response", "occurredAt"},
			"additionalProperties": false,
			"properties": schema{
				"type":      schema{"enum": []string{EventSucceeded, EventFailed}, "description": "command.succeeded for an answered call (response.status tells a 4xx refusal), command.failed for a 500."},
				"requestId": schema{"type": "string"},
				"method":    schema{"type": "string"},
				"orderId":   schema{"type": "string", "description": "The first order the call concerns, for the order methods; their events are delivered in order."},
				"response": schema{"type": "object", "required": []string{"status", "body"}, "additionalProperties": false,
					"description": "The answer, as getRequest shows it.",
					"properties":  schema{"status": schema{"type": "integer"}, "body": schema{}}},
				"occurredAt": schema{"type": "integer", "description": "Unix seconds."},
			},
		},
		"PingEvent": {
			"type": "object", "required": []string{"type", "occurredAt"}, "additionalProperties": false,
			"properties": schema{"type": schema{"const": EventPing}, "occurredAt": schema{"type": "integer"}},
		},
	}
}

// webhooks are the events POSTed to a partner's endpoint, signed by the
// Standard Webhooks scheme.
func webhooks() schema {
	sig := []any{
		schema{"name": webhook.HeaderID, "in": "header", "required": true, "schema": schema{"type": "string"},
			"description": "The event's id, the same on every attempt: drop a duplicate by it."},
		schema{"name": webhook.HeaderTimestamp, "in": "header", "required": true, "schema": schema{"type": "string", "pattern": `^[0-9]+$`},
			"description": "Unix seconds of this attempt; refuse one minutes off."},
		schema{"name": webhook.HeaderSignature, "in": "header", "required": true, "schema": schema{"type": "string"},
			"description": "v1, and the base64 HMAC-SHA256 of id.timestamp.body keyed with the secret's base64-decoded part after whsec_."},
	}
	op := func(id, summary, component string) schema {
		return schema{"post": schema{
			"operationId": id, "summary": summary, "tags": []string{"webhooks"},
			"description": "Delivered from a transactional outbox: any 2xx within the timeout is delivered, 410 Gone disables the endpoint, anything else is retried with back-off.",
			"security":    []any{},
			"parameters":  sig,
			"requestBody": schema{"required": true, "content": schema{"application/json": schema{"schema": ref("schemas", component)}}},
			"responses": schema{
				"2XX": schema{"description": "Delivered."},
				"410": schema{"description": "Gone: the endpoint is disabled; no more events are sent."},
			},
		}}
	}
	return schema{
		EventSucceeded: op("commandSucceeded", "A mutating call was answered (a refusal included)", "CommandEvent"),
		EventFailed:    op("commandFailed", "A mutating call failed inside the service (answered 500)", "CommandEvent"),
		EventPing:      op("ping", "Sent by `bin/gateway webhooks test`", "PingEvent"),
	}
}
