package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// MaxDepth is how deeply arrays and objects may nest in a body. The deepest
// params (createCustomer's admin) nest two levels; the rest is room for the
// top-level fields a partner adds and the service ignores.
const MaxDepth = 16

// envelope is the request body: {"method": ..., "params": {...}}. Names match
// exactly, so "METHOD" is one of the other top-level fields, which are ignored;
// a name that appears twice anywhere is refused.
type envelope struct {
	Method jsontext.Value `json:"method"`
	Params jsontext.Value `json:"params"`
}

// parseEnvelope decodes the body into its registered method and raw params.
// The method is nil when the body names none that is registered.
func parseEnvelope(body []byte) (*protocol.Method, []byte, *protocol.Error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil, protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidJSON, "",
			fmt.Sprintf(`the body is empty; send a JSON object such as {"method":%q,"params":{"id":"ABC"}}`, protocol.GetCustomer))
	}
	if at, ok := withinDepth(body, MaxDepth); !ok {
		return nil, nil, protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidJSON, "",
			fmt.Sprintf("the body nests arrays and objects deeper than %d levels (at byte %d)", MaxDepth, at))
	}
	var env envelope
	if err := jsonv2.Unmarshal(body, &env); err != nil {
		return nil, nil, envelopeError(err)
	}
	var method string
	if err := jsonv2.Unmarshal(env.Method, &method); err != nil || method == "" {
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

// envelopeError is the 400 of a body that does not decode: invalid JSON with
// the parser's position, a duplicate name naming it, or not an object.
func envelopeError(err error) *protocol.Error {
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		field := protocol.FieldName(syn.JSONPointer)
		if errors.Is(syn.Err, jsontext.ErrDuplicateName) {
			return protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidJSON, field,
				fmt.Sprintf("%s appears twice (at byte %d); every name may appear once", field, syn.ByteOffset))
		}
		if field != "" {
			return protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidJSON, field,
				fmt.Sprintf("%s is not valid JSON: %v (at byte %d)", field, syn.Err, syn.ByteOffset))
		}
		return protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidJSON, "",
			fmt.Sprintf("the body is not valid JSON: %v (at byte %d)", syn.Err, syn.ByteOffset))
	}
	return protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidRequest, "",
		"the body must be a JSON object with method and params")
}

// withinDepth reports whether the arrays and objects of body nest at most max
// levels, and where the first one too deep opens. It only counts brackets
// outside strings; the decoder checks everything else.
func withinDepth(body []byte, max int) (int, bool) {
	depth, inString, escaped := 0, false, false
	for i, c := range body {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return i, false
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return 0, true
}
