package openapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// Dialect is the JSON Schema dialect of every schema in the document.
const Dialect = "https://json-schema.org/draft/2020-12/schema"

// Component names of a method's schemas: its call (method and params), its
// params and its result of status 200. The end-to-end tests hold each
// answer of a method to ResultSchema(method).
func CallSchema(method string) string   { return exported(method) + "Call" }
func ParamsSchema(method string) string { return exported(method) + "Params" }
func ResultSchema(method string) string { return exported(method) + "Result" }

func exported(method string) string { return strings.ToUpper(method[:1]) + method[1:] }

func ref(kind, name string) schema { return schema{"$ref": "#/components/" + kind + "/" + name} }

// Build makes the document from the registry, as indented JSON.
func Build() ([]byte, error) {
	d, err := document()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func document() (schema, error) {
	schemas, err := methodSchemas()
	if err != nil {
		return nil, err
	}
	schemas["Error"] = errorSchema()
	schemas["Pending"] = schema{"type": "object", "required": []string{"status", "requestId"}, "additionalProperties": false,
		"properties": schema{"status": schema{"const": "pending"}, "requestId": schema{"type": "string"}, "livemode": livemode}}
	for name, s := range webhookSchemas() {
		schemas[name] = s
	}
	params, headers := schema{}, schema{}
	for _, h := range requestHeaders {
		params[componentName(h.name)] = schema{"name": h.name, "in": "header", "required": false,
			"description": h.desc, "schema": h.schema}
	}
	for _, h := range responseHeaders {
		headers[componentName(h.name)] = schema{"description": h.desc, "schema": h.schema, "required": h.always}
	}
	return schema{
		"openapi":           "3.1.0",
		"jsonSchemaDialect": Dialect,
		"info": schema{
			"title":       "OneOffice provisioner API",
			"version":     "1",
			"description": info,
			"license":     schema{"name": "Proprietary", "identifier": "LicenseRef-Proprietary"},
		},
		"servers":  []any{schema{"url": "http://127.0.0.1:8080", "description": "a local gateway (make run)"}},
		"security": []any{schema{"apiKey": []string{}}, schema{"bearer": []string{}}},
		"tags": []any{schema{"name": "api", "description": "The one endpoint and its methods."},
			schema{"name": "contract", "description": "This document."}, schema{"name": "webhooks", "description": "Events sent to the partner's endpoint."}},
		"paths": schema{
			"/": schema{
				"get":  call(http.MethodGet),
				"post": call(http.MethodPost),
			},
			"/openapi.json": schema{"get": contract()},
		},
		"webhooks": webhooks(),
		"components": schema{
			"schemas":    schemas,
			"parameters": params,
			"headers":    headers,
			"securitySchemes": schema{
				"apiKey": schema{"type": "apiKey", "in": "header", "name": HeaderAPIKey,
					"description": "The partner's API key. A missing, unknown or revoked key is 401 unauthorized before anything else is looked at."},
				"bearer": schema{"type": "http", "scheme": "bearer",
					"description": "The same key as Authorization: Bearer KEY."},
			},
		},
	}, nil
}

const info = `One endpoint, /, for GET and POST with a JSON body {"method": "<name>", "params": {...}}: ` +
	"the request body is a oneOf over the methods, told apart by `method`. A method's answer of status 200 is " +
	"the schema named after it, <Method>Result (createCustomer: CreateCustomerResult); every other answer is " +
	"an error body, or 202 pending. Ids are the partner's own and scoped to it; times are Unix seconds (UTC)."

// methodSchemas are the call, params and result schemas of every method,
// and the Call that is one of them, with the result types they refer to.
func methodSchemas() (map[string]schema, error) {
	r := &results{components: map[string]schema{}}
	calls, mapping := []any{}, schema{}
	out := map[string]schema{}
	for _, m := range protocol.Methods() {
		p, err := paramsSchema(m.ParamsType())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		res := m.Result()
		if res == nil {
			return nil, fmt.Errorf("%s: no result type (shared/protocol/results.go)", m.Name)
		}
		out[ParamsSchema(m.Name)] = p
		out[ResultSchema(m.Name)] = r.of(res)
		out[CallSchema(m.Name)] = schema{
			"type": "object", "description": describe(m), "required": []string{"method", "params"},
			"properties": schema{"method": schema{"const": m.Name}, "params": ref("schemas", ParamsSchema(m.Name))},
		}
		calls = append(calls, ref("schemas", CallSchema(m.Name)))
		mapping[m.Name] = "#/components/schemas/" + CallSchema(m.Name)
	}
	for name, s := range r.components {
		out[name] = s
	}
	for _, m := range protocol.Methods() {
		withLivemode(out, out[ResultSchema(m.Name)])
	}
	out["Call"] = schema{"oneOf": calls, "discriminator": schema{"propertyName": "method", "mapping": mapping},
		"description": "One call: the method's name and its params. Other top-level fields are ignored."}
	return out, nil
}

// livemode is the field the gateway adds to every JSON object it answers
// once the call's key is known (api.send).
var livemode = schema{"type": "boolean",
	"description": "false when the call's key is a test (sandbox) key, whose data is apart from live data; true otherwise. Absent only when the call's key was not known (401 and answers before the key is read)."}

// withLivemode lets the object s (or the component it refers to) carry
// livemode.
func withLivemode(components map[string]schema, s schema) {
	if r, ok := s["$ref"].(string); ok {
		s = components[r[strings.LastIndex(r, "/")+1:]]
	}
	if props, ok := s["properties"].(schema); ok {
		props["livemode"] = livemode
	}
}

// describe says how m is run and replayed.
func describe(m *protocol.Method) string {
	switch {
	case !m.Mutates:
		return m.Name + ": a read, answered from the database beside the command queue; takes no idempotency key and is never replayed."
	case !m.Keyed():
		return m.Name + ": changes state; never replayed (its answer is not kept)."
	case m.KeyField != "":
		return m.Name + ": changes state; replayed under its Idempotency-Key, or without one under the key derived from " + m.KeyField + " (the same " + m.KeyField + " with other params is 409 already_exists)."
	}
	return m.Name + ": changes state; replayed under its Idempotency-Key, else idempotent by state."
}

func errorSchema() schema {
	var codes []string
	for _, c := range errorCodes {
		codes = append(codes, c.code)
	}
	return schema{
		"type": "object", "required": []string{"error", "requestId"}, "additionalProperties": false,
		"properties": schema{
			"error": schema{"type": "object", "required": []string{"code", "message"}, "additionalProperties": false,
				"properties": schema{
					"code":    schema{"type": "string", "enum": codes},
					"message": schema{"type": "string", "description": "A sentence naming the field and the rule it breaks."},
					"field":   schema{"type": "string", "description": "The field at fault, as params.x or a header's name; only where one field is."},
				}},
			"requestId": schema{"type": "string", "description": "The call's request id (X-Request-Id)."},
			"livemode":  livemode,
		},
	}
}

// call is the operation of / for verb.
func call(verb string) schema {
	params := []any{}
	for _, h := range requestHeaders {
		params = append(params, ref("parameters", componentName(h.name)))
	}
	return schema{
		"operationId": "call" + map[string]string{http.MethodGet: "WithGet", http.MethodPost: ""}[verb],
		"tags":        []string{"api"},
		"summary":     "Call a method (" + verb + ")",
		"description": "Call one method. GET and POST are the same call; partners' examples send GET with a body, and many clients can only POST.",
		"parameters":  params,
		"requestBody": schema{"required": true, "content": schema{"application/json": schema{"schema": ref("schemas", "Call"),
			"examples": examples()}}},
		"responses": responses(),
	}
}

func responses() schema {
	out := schema{}
	var results []any
	seen := map[string]bool{}
	for _, m := range protocol.Methods() {
		// Several methods share a result; anyOf lists each once.
		if !seen[m.Result().Name()] {
			seen[m.Result().Name()] = true
			results = append(results, ref("schemas", m.Result().Name()))
		}
	}
	out["200"] = response(http.StatusOK, "The method's result: <Method>Result.", schema{"anyOf": results})
	out["202"] = response(http.StatusAccepted, "The command was sent but not answered in time; it still runs, once. Repeat the call (same key or create params) or poll getRequest.", ref("schemas", "Pending"))
	for status, codes := range codesByStatus() {
		var names []string
		var lines []string
		for _, c := range codes {
			names = append(names, c.code)
			lines = append(lines, "- "+c.code+": "+c.when)
		}
		s := schema{"allOf": []any{ref("schemas", "Error"), schema{"properties": schema{"error": schema{"properties": schema{"code": schema{"enum": names}}}}}}}
		out[strconv.Itoa(status)] = response(status, http.StatusText(status)+".\n"+strings.Join(lines, "\n"), s)
	}
	return out
}

func response(status int, desc string, s schema) schema {
	headers := schema{}
	for _, h := range responseHeaders {
		if h.carries(status) {
			headers[h.name] = ref("headers", componentName(h.name))
		}
	}
	return schema{"description": desc, "headers": headers, "content": schema{"application/json": schema{"schema": s}}}
}

// contract is the operation of GET /openapi.json.
func contract() schema {
	etag := schema{"description": "The document's entity tag.", "schema": schema{"type": "string"}}
	return schema{
		"operationId": "openapi", "tags": []string{"contract"}, "summary": "This document",
		"description": "The OpenAPI document of the API, served without a key. It changes only with the gateway's version: keep it and revalidate with If-None-Match.",
		"security":    []any{},
		"parameters": []any{schema{"name": HeaderIfNoneMatch, "in": "header", "required": false, "schema": schema{"type": "string"},
			"description": "The ETag of the copy the client holds: 304 when it is current."}},
		"responses": schema{
			"200": schema{"description": "The document.",
				"headers": schema{HeaderETag: etag, HeaderCacheControl: schema{"description": "no-cache: revalidate before use.", "schema": schema{"const": "no-cache"}}},
				"content": schema{"application/json": schema{"schema": schema{"type": "object"}}}},
			"304": schema{"description": "The client's copy is current.", "headers": schema{HeaderETag: etag}},
		},
	}
}

// examples are a call of every method, its params made of the examples of
// their rules, the optional ones included.
func examples() schema {
	out := schema{}
	for _, m := range protocol.Methods() {
		out[m.Name] = schema{"summary": m.Name, "value": schema{"method": m.Name, "params": exampleParams(m.ParamsType())}}
	}
	return out
}

// exampleParams is a value of params struct t, each field the first example
// (or enum value) of its rule's schema.
func exampleParams(t reflect.Type) schema {
	out := schema{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _ := jsonName(f)
		if name == "" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		rs := ruleSchemas[f.Tag.Get("rule")]
		switch {
		case ft.Kind() == reflect.Struct:
			out[name] = exampleParams(ft)
		case rs["examples"] != nil:
			out[name] = reflect.ValueOf(rs["examples"]).Index(0).Interface()
		case rs["enum"] != nil:
			out[name] = reflect.ValueOf(rs["enum"]).Index(0).Interface()
		}
	}
	return out
}
