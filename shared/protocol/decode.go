package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// fieldRules names the rule of each param, so that a value of the wrong JSON type
// gets the same message as a value out of range.
var fieldRules = map[string]string{
	"id": ruleID, "customer": ruleID, "parent": ruleID, "name": ruleName,
	"admin": ruleAdmin, "admin.email": ruleEmail, "admin.phone": rulePhone,
	"admin.displayName": ruleOptName, "displayName": ruleOptName, "email": ruleEmail,
	"product": ruleProduct, "licenses": ruleLicenses, "duration": ruleDuration,
}

// DecodeParams decodes and validates the params object of a method. Unknown
// fields are ignored; a field of the wrong type or out of its rule is a 400
// naming the field and the rule.
func DecodeParams(method string, raw []byte) (Params, *Error) {
	m, ok := Lookup(method)
	if !ok {
		return nil, NewError(http.StatusBadRequest, CodeUnknownMethod, "method",
			fmt.Sprintf("method %q is not one of the API methods", method))
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, NewError(http.StatusBadRequest, CodeInvalidRequest, "params", "params must be a JSON object")
	}
	p := m.NewParams()
	if err := json.Unmarshal(raw, p); err != nil {
		return nil, paramsError(err)
	}
	if e := p.Validate(); e != nil {
		return nil, e
	}
	return p, nil
}

func paramsError(err error) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := "params." + te.Field
		if rule, ok := fieldRules[te.Field]; ok {
			return InvalidParams(field, field+" "+rule)
		}
		return InvalidParams(field, fmt.Sprintf("%s must not be a JSON %s", field, te.Value))
	}
	return InvalidParams("params", "params could not be decoded: "+err.Error())
}

// Canonical encodes validated params in their canonical form: the fields of the
// typed struct in a fixed order, unknown fields dropped. The fingerprint of an
// idempotent call and the command body are both this encoding.
func Canonical(p Params) []byte {
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("protocol: params of type %T do not encode: %v", p, err))
	}
	return b
}
