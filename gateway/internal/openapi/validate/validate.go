// Package validate holds answers of the API to the OpenAPI document: an
// answer of status 200 to its method's result schema, any other to the
// schema of its status on /. The end-to-end tests run every answer they get
// through it, so that the document and the service cannot drift apart
// unnoticed. It is test tooling: the gateway does not link it.
package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/oneoffice/provisioner/gateway/internal/openapi"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// resource is the document's name among the compiler's resources.
const resource = "https://oneoffice.invalid/openapi.json"

// Validator holds the compiled schemas of one document. It is safe for
// concurrent use.
type Validator struct {
	results  map[string]*jsonschema.Schema // by method
	statuses map[int]*jsonschema.Schema    // the answers of / but 200
	headers  map[int][]header              // by status, 200 included
	events   map[string]*jsonschema.Schema // the webhook events' bodies, by type
}

// header is a response header the document declares for one status.
type header struct {
	name     string
	required bool
	integer  bool // the value is read as an integer
	schema   *jsonschema.Schema
}

// New compiles the schemas of the OpenAPI document doc: the result of every
// method of the registry and the answer of every status of /.
func New(doc []byte) (*Validator, error) {
	d, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("the document: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(resource, d); err != nil {
		return nil, err
	}
	v := &Validator{results: map[string]*jsonschema.Schema{}, statuses: map[int]*jsonschema.Schema{}}
	for _, m := range protocol.Methods() {
		s, err := c.Compile(resource + "#/components/schemas/" + openapi.ResultSchema(m.Name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		v.results[m.Name] = s
	}
	var shape struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Headers map[string]struct {
					Ref string `json:"$ref"`
				}
			}
		}
		Webhooks   map[string]json.RawMessage
		Components struct {
			Headers map[string]struct {
				Required bool
				Schema   struct{ Type string }
			}
		}
	}
	if err := json.Unmarshal(doc, &shape); err != nil {
		return nil, err
	}
	v.headers = map[int][]header{}
	for code, r := range shape.Paths["/"]["post"].Responses {
		status, err := strconv.Atoi(code)
		if err != nil {
			continue
		}
		if status != 200 {
			s, err := c.Compile(resource + "#/paths/~1/post/responses/" + code + "/content/application~1json/schema")
			if err != nil {
				return nil, fmt.Errorf("the answer of status %d: %w", status, err)
			}
			v.statuses[status] = s
		}
		for name, h := range r.Headers {
			component := strings.TrimPrefix(h.Ref, "#/components/headers/")
			s, err := c.Compile(resource + "#/components/headers/" + component + "/schema")
			if err != nil {
				return nil, fmt.Errorf("header %s: %w", name, err)
			}
			decl := shape.Components.Headers[component]
			v.headers[status] = append(v.headers[status], header{name: name, required: decl.Required,
				integer: decl.Schema.Type == "integer", schema: s})
		}
	}
	v.events = map[string]*jsonschema.Schema{}
	for name := range shape.Webhooks {
		s, err := c.Compile(resource + "#/webhooks/" + name + "/post/requestBody/content/application~1json/schema")
		if err != nil {
			return nil, fmt.Errorf("webhook %s: %w", name, err)
		}
		v.events[name] = s
	}
	return v, nil
}

// Event reports how the body of a webhook event breaks the document: each
// event type is a webhook of the document, named as its type.
func (v *Validator) Event(body []byte) error {
	var e struct{ Type string }
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("event: not JSON: %v: %.200q", err, body)
	}
	s := v.events[e.Type]
	if s == nil {
		return fmt.Errorf("event: the document has no webhook %q", e.Type)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err == nil {
		err = s.Validate(inst)
	}
	if err != nil {
		return fmt.Errorf("event %q: %v\nbody: %.500s", e.Type, err, body)
	}
	return nil
}

// Headers reports how the headers h of an answer of status break the
// document: a required one missing, or a value off its schema.
func (v *Validator) Headers(status int, h http.Header) error {
	var errs []error
	for _, d := range v.headers[status] {
		vals := h.Values(d.name)
		if len(vals) == 0 {
			if d.required {
				errs = append(errs, fmt.Errorf("%d: header %s missing", status, d.name))
			}
			continue
		}
		var inst any = vals[0]
		if d.integer {
			inst = json.Number(vals[0])
			if _, err := strconv.ParseInt(vals[0], 10, 64); err != nil {
				errs = append(errs, fmt.Errorf("%d: header %s: %q is not an integer", status, d.name, vals[0]))
				continue
			}
		}
		if err := d.schema.Validate(inst); err != nil {
			errs = append(errs, fmt.Errorf("%d: header %s: %q: %v", status, d.name, vals[0], err))
		}
	}
	return errors.Join(errs...)
}

// Response reports how an answer of status with body to a call of method
// breaks the document; nil when it holds. method may be anything the call
// named, or "" when it named none.
func (v *Validator) Response(method string, status int, body []byte) error {
	var s *jsonschema.Schema
	if status == 200 {
		s = v.results[method]
		if s == nil {
			return fmt.Errorf("%q 200: the document has no method %q", method, method)
		}
	} else if s = v.statuses[status]; s == nil {
		return fmt.Errorf("%q %d: the document has no answer of status %d", method, status, status)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%q %d: the body is not JSON: %v: %.200q", method, status, err, body)
	}
	if err := s.Validate(inst); err != nil {
		return fmt.Errorf("%q %d: %v\nbody: %.500s", method, status, err, body)
	}
	return nil
}
