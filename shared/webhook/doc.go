// Package webhook holds what the gateway's admin commands and the worker's
// dispatcher both need to push signed events to a partner (SPEC section 6):
// signing secrets and their signatures (the Standard Webhooks scheme), the
// encryption of the secrets at rest, the policy of which URLs and addresses
// may be called, the HTTP delivery of one event, and the endpoints' rows.
package webhook
