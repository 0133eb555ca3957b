package openapi

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// schema is one JSON Schema (2020-12) object.
type schema = map[string]any

// plainText refuses what every text field refuses (protocol/text.go): the
// C0 and C1 controls, DEL, the zero-width and bidirectional controls, the
// line and paragraph separators, the byte order mark and U+FFFD (what
// invalid UTF-8 decodes to). The characters are written as themselves, so
// that ECMA-262 and RE2 engines read the class alike.
var plainText = fmt.Sprintf("^[^%c-%c%c-%c%c%c%c-%c%c-%c%c-%c%c-%c%c%c]*$",
	0x00, 0x1f, 0x7f, 0x9f, 0x061c, 0x180e, 0x200b, 0x200f, 0x2028, 0x202e,
	0x2060, 0x2064, 0x2066, 0x2069, 0xfeff, 0xfffd)

// nonBlankText is plainText with at least one character that is not white
// space (strings.TrimSpace's, less the controls plainText refuses anyway).
var nonBlankText = func() string {
	refused := plainText[len("^[^") : len(plainText)-len("]*$")]
	blank := fmt.Sprintf(" %c%c%c-%c%c%c%c", 0xa0, 0x1680, 0x2000, 0x200a, 0x202f, 0x205f, 0x3000)
	return "^[^" + refused + "]*[^" + refused + blank + "][^" + refused + "]*$"
}()

// ruleSchemas are the JSON Schema of a value under each rule a params field
// may name in its `rule` tag (protocol/rules.go). The rule's words become
// its description. A test fails on a rule used by a method and missing here.
var ruleSchemas = map[string]schema{
	"id": {"type": "string", "minLength": 1, "maxLength": protocol.MaxIDLen, "pattern": `^[A-Za-z0-9._:-]+$`,
		"examples": []string{"ABC", "REMOTEORDER1"}},
	"name": {"type": "string", "minLength": 1, "maxLength": protocol.MaxNameLen, "pattern": nonBlankText,
		"examples": []string{"ABC Company"}},
	"optName": {"type": "string", "maxLength": protocol.MaxNameLen, "pattern": plainText, "examples": []string{"Isa Aswath"}},
	"phone":   {"type": "string", "maxLength": protocol.MaxPhoneLen, "pattern": plainText, "examples": []string{"111111111"}},
	"email": {"type": "string", "format": "email", "maxLength": protocol.MaxEmailLen, "pattern": `^[!-~]+@[!-~]+\.[!-~]+$`,
		"$comment": "kept and compared lower-cased", "examples": []string{"test3@example.com"}},
	"admin":     {"type": "object"},
	"product":   {"type": "string", "enum": protocol.Products},
	"licenses":  {"type": "integer", "minimum": protocol.MinLicenses, "maximum": protocol.MaxLicenses, "examples": []int{20}},
	"duration":  {"type": "string", "enum": []string{protocol.Monthly, protocol.Yearly}},
	"requestID": {"type": "string", "minLength": 1, "maxLength": protocol.MaxRequestIDLen, "pattern": printable, "examples": []string{"req-42"}},
	// The rules of the lists and of getOrders (SPEC section 2, "Lists and
	// batch reads"); a row stays unused until a method's params name it.
	"limit":       {"type": "integer", "minimum": 1, "maximum": 100, "default": 50, "examples": []int{50}},
	"cursor":      {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": `^[A-Za-z0-9_.-]+$`, "examples": []string{"eyJhIjpbXX0.AbC-_9"}},
	"unixTime":    {"type": "integer", "minimum": 0, "maximum": 253402300799, "examples": []int{1700000000}},
	"orderStatus": {"type": "string", "enum": []string{"active", "suspended", "cancelled", "expired"}},
	"callStatus":  {"type": "string", "enum": []string{"succeeded", "failed"}},
	"command":     {"type": "string", "enum": commands()},
	"eventType":   {"type": "string", "enum": []string{"command.succeeded", "command.failed"}},
	"eventID": {"type": "string", "pattern": `^msg_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`,
		"examples": []string{"msg_0b6f3c1e-8f4a-4f0e-9a51-2c4b8e1d7f30"}},
	"orderIDs": {"type": "array", "minItems": 1, "maxItems": 100, "uniqueItems": true, "examples": [][]string{{"O1", "R1"}},
		"items": schema{"type": "string", "minLength": 1, "maxLength": protocol.MaxIDLen, "pattern": `^[A-Za-z0-9._:-]+$`}},
}

// commands are the names of the methods that change something.
func commands() []string {
	var names []string
	for _, m := range protocol.Methods() {
		if m.Mutates {
			names = append(names, m.Name)
		}
	}
	return names
}

// jsonName is a struct field's name on the wire and whether it may be
// absent; "" for a field the wire never carries.
func jsonName(f reflect.StructField) (name string, optional bool) {
	name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" || !f.IsExported() {
		return "", false
	}
	return name, strings.Contains(","+opts+",", ",omitempty,")
}

// paramsSchema is the schema of params struct t: each field under its rule,
// required unless it may be left out (omitempty, or a pointer that is not a
// required object). Names the struct does not define are refused.
func paramsSchema(t reflect.Type) (schema, error) {
	props, required := schema{}, []string{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, optional := jsonName(f)
		if name == "" {
			continue
		}
		ruleName := f.Tag.Get("rule")
		base, ok := ruleSchemas[ruleName]
		if !ok {
			return nil, fmt.Errorf("%s.%s: rule %q has no schema in ruleSchemas", t, f.Name, ruleName)
		}
		s := clone(base)
		if must, ok := protocol.RuleText(ruleName); ok {
			s["description"] = must
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
			optional = optional || base["type"] != "object"
		}
		if ft.Kind() == reflect.Struct {
			sub, err := paramsSchema(ft)
			if err != nil {
				return nil, err
			}
			for k, v := range sub {
				s[k] = v
			}
		}
		if optional {
			nullable(s)
		} else {
			required = append(required, name)
		}
		props[name] = s
	}
	out := schema{"type": "object", "properties": props, "required": required, "additionalProperties": false}
	if c, ok := crossRules[t]; ok {
		for k, v := range c {
			out[k] = v
		}
	}
	return out, nil
}

// crossRules are the rules across the fields of a params type (its check
// method), by type. A test fails on a method whose params have a check and
// no row here.
var crossRules = map[reflect.Type]schema{
	reflect.TypeFor[protocol.UpdateOrderParams](): {
		"description": "params must carry licenses, product or both",
		"anyOf": []any{
			schema{"required": []string{"licenses"}, "properties": schema{"licenses": schema{"type": "integer"}}},
			schema{"required": []string{"product"}, "properties": schema{"product": schema{"type": "string"}}},
		},
	},
}

// nullable lets an optional field's value be null, which the gateway takes
// as the field left out.
func nullable(s schema) {
	if t, ok := s["type"].(string); ok && t != "object" {
		s["type"] = []string{t, "null"}
		if e, ok := s["enum"].([]string); ok {
			s["enum"] = append(anySlice(e), nil)
		}
		s["description"] = fmt.Sprint(s["description"], "; optional: null is the same as leaving it out")
	}
}

func anySlice(e []string) []any {
	out := make([]any, len(e))
	for i, v := range e {
		out[i] = v
	}
	return out
}

func clone(s schema) schema {
	c := make(schema, len(s))
	for k, v := range s {
		c[k] = v
	}
	return c
}

// results turns Go result types into schemas, each named struct once, as a
// component referred to by its type's name.
type results struct {
	components map[string]schema
}

// of is the schema of a value of type t as encoding/json writes it.
func (r *results) of(t reflect.Type) schema {
	switch t.Kind() {
	case reflect.Pointer:
		s := r.of(t.Elem())
		if typ, ok := s["type"].(string); ok {
			s["type"] = []string{typ, "null"}
			return s
		}
		return schema{"oneOf": []any{s, schema{"type": "null"}}}
	case reflect.Slice:
		return schema{"type": "array", "items": r.of(t.Elem())}
	case reflect.String:
		return schema{"type": "string"}
	case reflect.Bool:
		return schema{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return schema{"type": "integer"}
	case reflect.Float64:
		return schema{"type": "number"}
	case reflect.Interface:
		return schema{}
	case reflect.Struct:
		name := t.Name()
		if _, ok := r.components[name]; !ok {
			r.components[name] = nil // taken: a recursive type refers to itself
			r.components[name] = r.object(t)
		}
		return schema{"$ref": "#/components/schemas/" + name}
	}
	panic(fmt.Sprintf("openapi: no schema for a result of type %s", t))
}

// object is the schema of struct t. Its fields are required unless omitempty;
// a field it does not name is refused, so that the document cannot fall
// behind what the service answers unnoticed.
func (r *results) object(t reflect.Type) schema {
	props, required := schema{}, []string{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, optional := jsonName(f)
		if name == "" {
			continue
		}
		s := r.of(f.Type)
		switch e := f.Tag.Get("enum"); e {
		case "":
		case "products":
			s["enum"] = protocol.Products
		default:
			s["enum"] = strings.Split(e, ",")
		}
		if d := f.Tag.Get("doc"); d != "" {
			s["description"] = d // beside a $ref too, as JSON Schema 2020-12 allows
		}
		props[name] = s
		if !optional {
			required = append(required, name)
		}
	}
	return schema{"type": "object", "properties": props, "required": required, "additionalProperties": false}
}
