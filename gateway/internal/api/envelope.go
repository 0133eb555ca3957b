package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// envelope is the request body: {"method": ..., "params": {...}}; any other
// top-level field is ignored.
type envelope struct {
	Method json.RawMessage `json:"method"`
	Params json.RawMessage `json:"params"`
}

// parseEnvelope decodes the body into its registered method and raw params.
// The method is nil when the body names none that is registered.
func parseEnvelope(body []byte) (*protocol.Method, []byte, *protocol.Error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil, protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidJSON, "",
			`the body is empty; send a JSON object such as {"method":"getCustomer","params":{"id":"ABC"}}`)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, nil, protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidJSON, "",
				fmt.Sprintf("the body is not valid JSON: %s (at byte %d)", se.Error(), se.Offset))
		}
		return nil, nil, protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidRequest, "",
			"the body must be a JSON object with method and params")
	}
	var method string
	if err := json.Unmarshal(env.Method, &method); err != nil || method == "" {
		return nil, nil, protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidRequest, "method",
			"method must be a string naming an API method, such as getCustomer")
	}
	m, ok := protocol.Lookup(method)
	if !ok {
		return nil, nil, protocol.NewError(http.StatusBadRequest, protocol.CodeUnknownMethod, "method",
			fmt.Sprintf("method %q is not one of the API methods", method))
	}
	return m, env.Params, nil
}
