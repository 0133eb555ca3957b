package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// strictParams are the decoding rules of every params object (README,
// "Decoding rules"): names match exactly, case included; a name the method
// does not define is refused rather than ignored, so a misspelt optional field
// is never silently dropped; a duplicate name and invalid UTF-8 are refused by
// the decoder itself; an integer is a JSON integer (20, not 20.0, 2e1 or "20").
var strictParams = jsonv2.RejectUnknownMembers(true)

// DecodeParams decodes and validates the params object of the method called
// method: a field of the wrong type, out of its rule or unknown is a 400
// naming the field.
func DecodeParams(method string, raw []byte) (Params, *Error) {
	m, ok := Lookup(method)
	if !ok {
		return nil, NewError(http.StatusBadRequest, CodeUnknownMethod, "method",
			fmt.Sprintf("method %q is not one of the API methods", method))
	}
	return m.Decode(raw)
}

// Decode decodes and validates params of m, as DecodeParams.
func (m *Method) Decode(raw []byte) (Params, *Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, NewError(http.StatusBadRequest, CodeInvalidRequest, "params", "params must be a JSON object")
	}
	p := m.newParams()
	if err := jsonv2.Unmarshal(raw, p, strictParams); err != nil {
		return nil, m.paramsError(err)
	}
	if e := validate(reflect.ValueOf(p).Elem(), m.rules.fields); e != nil {
		return nil, e
	}
	if c, ok := p.(crossChecker); ok {
		if e := c.check(); e != nil {
			return nil, e
		}
	}
	return p, nil
}

// paramsError names the field at fault in a decoding error of params.
func (m *Method) paramsError(err error) *Error {
	var se *jsonv2.SemanticError
	if errors.As(err, &se) {
		name := FieldName(se.JSONPointer)
		field := "params"
		if name != "" {
			field += "." + name
		}
		switch {
		case errors.Is(se.Err, jsonv2.ErrUnknownName):
			return InvalidParams(field, fmt.Sprintf("%s is not a param of %s (names are case-sensitive)", field, m.Name))
		case m.rules.mistyped[field] != "":
			return InvalidParams(field, m.rules.mistyped[field])
		case m.rules.mistyped[listOf(field)] != "":
			// An element of an array of the wrong type: the array's rule.
			return InvalidParams(field, m.rules.mistyped[listOf(field)])
		}
		return InvalidParams(field, fmt.Sprintf("%s must not be a JSON %s", field, se.JSONKind))
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		field := "params"
		if name := FieldName(syn.JSONPointer); name != "" {
			field += "." + name
		}
		msg := fmt.Sprintf("%s is not valid JSON: %v", field, syn.Err)
		if errors.Is(syn.Err, jsontext.ErrDuplicateName) {
			msg = field + " appears twice; every name may appear once"
		}
		return NewError(http.StatusBadRequest, CodeInvalidJSON, field, msg)
	}
	return InvalidParams("params", "params could not be decoded: "+err.Error())
}

// listOf is the array field whose element field is (params.ids of
// params.ids.3), or "".
func listOf(field string) string {
	i := strings.LastIndexByte(field, '.')
	if i < 0 || strings.Trim(field[i+1:], "0123456789") != "" {
		return ""
	}
	return field[:i]
}

// FieldName turns a JSON pointer (/params/admin/email) into the dotted field
// name of the API's messages (params.admin.email).
func FieldName(p jsontext.Pointer) string {
	var names []string
	for tok := range p.Tokens() {
		names = append(names, tok)
	}
	return strings.Join(names, ".")
}

// Canonical encodes validated params in their canonical form: the fields of the
// typed struct in a fixed order. The fingerprint of an idempotent call and the
// command body are both this encoding.
func Canonical(p Params) []byte {
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("protocol: params of type %T do not encode: %v", p, err))
	}
	return b
}
