package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// TestParamsSchemasAgreeWithTheGateway: for every method, params made from
// the schema's examples and then bent one field at a time (left out, of
// another JSON type, at and past its bounds, out of its enum or pattern, a
// name the method does not define) are accepted by the method's params
// schema exactly when the gateway's own decoding accepts them. So the
// document tells a client generator the truth about every field.
func TestParamsSchemasAgreeWithTheGateway(t *testing.T) {
	var d map[string]any
	if err := json.Unmarshal(JSON, &d); err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(JSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("openapi.json", doc); err != nil {
		t.Fatal(err)
	}
	schemas := at(d, "components", "schemas").(map[string]any)
	for _, m := range protocol.Methods() {
		s, err := c.Compile("openapi.json#/components/schemas/" + ParamsSchema(m.Name))
		if err != nil {
			t.Fatal(err)
		}
		ps := schemas[ParamsSchema(m.Name)].(map[string]any)
		ex, err := example(ps)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		base := ex.(map[string]any)
		cases := []map[string]any{base}
		cases = append(cases, variants(base, ps, nil)...)
		for _, params := range cases {
			raw, _ := json.Marshal(params)
			var gateway, doc error
			if _, e := m.Decode(raw); e != nil {
				gateway = e
			}
			inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
			doc = s.Validate(inst)
			if (gateway == nil) != (doc == nil) {
				t.Errorf("%s %s: the gateway says %s, the schema says %s", m.Name, raw, verdict(gateway), verdict(doc))
			}
		}
	}
}

func verdict(err error) string {
	if err == nil {
		return "accepted"
	}
	return fmt.Sprintf("refused (%v)", strings.ReplaceAll(err.Error(), "\n", " "))
}

// example is a value of schema s made of its examples: every property, the
// optional ones too.
func example(s map[string]any) (any, error) {
	if ex, ok := s["examples"].([]any); ok && len(ex) > 0 {
		return ex[0], nil
	}
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		return e[0], nil
	}
	props, ok := s["properties"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("a schema with no examples, enum or properties: %v", s)
	}
	out := map[string]any{}
	for name, p := range props {
		v, err := example(p.(map[string]any))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// variants are copies of obj (of schema s, at path within the params) with
// one field bent each.
func variants(obj map[string]any, s map[string]any, path []string) []map[string]any {
	var out []map[string]any
	with := func(name string, v any, drop bool) {
		c := cloneJSON(obj)
		if drop {
			delete(c, name)
		} else {
			c[name] = v
		}
		out = append(out, c)
	}
	with("zzUnknown", 1, false)
	// Every optional field null at once: the same as all left out.
	all := cloneJSON(obj)
	required, _ := s["required"].([]any)
	for name := range s["properties"].(map[string]any) {
		if !slices.Contains(required, any(name)) {
			all[name] = nil
		}
	}
	out = append(out, all)
	for name, p := range s["properties"].(map[string]any) {
		p := p.(map[string]any)
		with(name, nil, true)
		for _, v := range bent(p) {
			with(name, v, false)
		}
		if sub, ok := obj[name].(map[string]any); ok {
			for _, v := range variants(sub, p, append(path, name)) {
				with(name, v, false)
			}
		}
	}
	return out
}

// bent are values of every JSON type, and at and past the bounds of p.
func bent(p map[string]any) []any {
	vals := []any{nil, true, 7, 2.5, "x", "", " ", "A B", "a\u200bb", "é", "ä@example.com", []any{}, map[string]any{}}
	if n, ok := p["maxLength"].(float64); ok {
		vals = append(vals, strings.Repeat("a", int(n)), strings.Repeat("a", int(n)+1),
			strings.Repeat("a", int(n)-len("@example.com"))+"@example.com", strings.Repeat("a", int(n)+1-len("@example.com"))+"@example.com")
	}
	for _, k := range []string{"minimum", "maximum"} {
		if n, ok := p[k].(float64); ok {
			vals = append(vals, n-1, n, n+1)
		}
	}
	return vals
}

func cloneJSON(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var c map[string]any
	_ = json.Unmarshal(b, &c)
	return c
}
