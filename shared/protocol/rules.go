package protocol

import (
	"cmp"
	"fmt"
	"reflect"
	"strings"
)

// rule is the rule a `rule` tag names: how a field is checked, and the words
// a partner reads after the field's name when its value breaks the rule.
type rule struct {
	must string
	// text checks a string field, number an integer field, list an array
	// of strings; an object is a required object whose fields carry their
	// own rules.
	text   func(field, v string) *Error
	number func(field string, n int) *Error
	list   func(field string, v []string) *Error
	object bool
	// fold is the one spelling kept of a valid value.
	fold func(string) string
	// mistyped, when set, is told instead of must for a value of the wrong
	// JSON type.
	mistyped string
}

// rules are the rules a params field may name in its tag.
var rules = map[string]rule{
	"id":   {must: ruleID, text: checkID},
	"name": {must: ruleName, text: func(f, v string) *Error { return checkText(f, v, 1, MaxNameLen, ruleName) }},
	"optName": {must: ruleOptName,
		text: func(f, v string) *Error { return checkText(f, v, 0, MaxNameLen, ruleOptName) }},
	"phone":    {must: rulePhone, text: func(f, v string) *Error { return checkText(f, v, 0, MaxPhoneLen, rulePhone) }},
	"email":    {must: ruleEmail, text: checkEmail, fold: NormalizeEmail},
	"admin":    {must: ruleAdmin, object: true},
	"product":  {must: ruleProduct, text: checkProduct},
	"licenses": {must: ruleLicenses, number: checkLicenses},
	"duration": {must: ruleDuration, text: func(f, v string) *Error {
		if v != Monthly && v != Yearly {
			return InvalidParams(f, f+" "+ruleDuration)
		}
		return nil
	}},
	// A request id of the wrong JSON type has always been told the rule of
	// an id; partners may match on the words, so they stay.
	"requestID": {must: ruleRequestID, text: checkRequestID, mistyped: ruleID},
	// The params of the lists and of getOrders.
	"limit":       {must: ruleLimit, number: checkLimit},
	"cursor":      {must: ruleCursor, text: checkCursor},
	"unixTime":    {must: ruleUnixTime, number: checkUnixTime},
	"orderStatus": {must: ruleOrderStatus, text: oneOf(ruleOrderStatus, "active", "suspended", "cancelled", "expired")},
	"callStatus":  {must: ruleCallStatus, text: oneOf(ruleCallStatus, "succeeded", "failed")},
	"command":     {must: ruleCommand, text: checkCommand},
	"orderIDs":    {must: ruleOrderIDs, list: checkOrderIDs},
	// The params of listEvents and replayEvent.
	"eventType": {must: ruleEventType, text: oneOf(ruleEventType, "command.succeeded", "command.failed")},
	"eventID":   {must: ruleEventID, text: checkEventID},
}

// field is one field of a params struct with its rule.
type field struct {
	index int
	name  string // as the API names it: params.admin.email
	rule  rule
	sub   []field // an object's fields
}

// paramsRules are the rules of one params struct, read from its tags.
type paramsRules struct {
	fields []field
	// mistyped is what a value of the wrong JSON type is told, by field name.
	mistyped map[string]string
}

// readRules reads the rules of params struct t. A field without a known
// rule, or with a rule for another kind of value, is a programming error
// and panics when the method is defined.
func readRules(t reflect.Type) paramsRules {
	r := paramsRules{mistyped: map[string]string{}}
	r.fields = readFields(t, "params", r.mistyped)
	return r
}

func readFields(t reflect.Type, prefix string, mistyped map[string]string) []field {
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("protocol: params type %s is not a struct", t))
	}
	fields := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		jsonName, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		ru, ok := rules[sf.Tag.Get("rule")]
		if jsonName == "" || jsonName == "-" || !ok {
			panic(fmt.Sprintf("protocol: field %s.%s needs a json name and one of the rules", t, sf.Name))
		}
		f := field{index: i, name: prefix + "." + jsonName, rule: ru}
		mistyped[f.name] = f.name + " " + cmp.Or(ru.mistyped, ru.must)
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch k := ft.Kind(); {
		case ru.object && sf.Type.Kind() == reflect.Pointer:
			f.sub = readFields(ft, f.name, mistyped)
		case ru.text != nil && k == reflect.String, ru.number != nil && k == reflect.Int,
			ru.list != nil && k == reflect.Slice && ft.Elem().Kind() == reflect.String:
		default:
			panic(fmt.Sprintf("protocol: field %s.%s of type %s cannot take rule %q", t, sf.Name, sf.Type, sf.Tag.Get("rule")))
		}
		fields = append(fields, f)
	}
	return fields
}

// validate applies the rules of fields to struct v, in the order of the
// fields, and folds the values it keeps. A nil pointer is an optional field
// left out, or a required object missing.
func validate(v reflect.Value, fields []field) *Error {
	for _, f := range fields {
		fv := v.Field(f.index)
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				if f.rule.object {
					return InvalidParams(f.name, f.name+" "+f.rule.must)
				}
				continue
			}
			fv = fv.Elem()
		}
		var e *Error
		switch {
		case f.rule.object:
			e = validate(fv, f.sub)
		case f.rule.number != nil:
			e = f.rule.number(f.name, int(fv.Int()))
		case f.rule.list != nil:
			e = f.rule.list(f.name, fv.Interface().([]string))
		default:
			e = f.rule.text(f.name, fv.String())
		}
		if e != nil {
			return e
		}
		if f.rule.fold != nil {
			fv.SetString(f.rule.fold(fv.String()))
		}
	}
	return nil
}

// crossChecker is params with a rule that spans its fields, applied after
// the rules of the fields.
type crossChecker interface{ check() *Error }
