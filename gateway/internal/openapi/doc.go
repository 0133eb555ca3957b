// Package openapi is the machine-readable contract (SPEC section 8b): an
// OpenAPI 3.1 document of the one endpoint, built from the method registry
// of shared/protocol (each method's params with the constraints of their
// `rule` tags, its result type), the error codes by status, the headers and
// the webhook events. Build makes it; openapi.json is the copy kept in the
// repository, embedded in the gateway and served at GET /openapi.json, and
// a test fails when the two differ (`make openapi` writes it again).
package openapi

import _ "embed"

//go:generate go run ./gen

// JSON is the document as committed, served by the gateway.
//
//go:embed openapi.json
var JSON []byte
