package openapi

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// TestCommittedDocumentIsCurrent keeps openapi.json, the copy in the
// repository that the gateway serves, equal to what the registry makes.
func TestCommittedDocumentIsCurrent(t *testing.T) {
	b, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, JSON) {
		t.Fatal("gateway/internal/openapi/openapi.json is not what the registry makes: run make openapi and commit it")
	}
}

// doc is the committed document, decoded.
func doc(t *testing.T) map[string]any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(JSON, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// at follows path through nested objects of d; nil when it is not there.
func at(d any, path ...string) any {
	for _, p := range path {
		m, ok := d.(map[string]any)
		if !ok {
			return nil
		}
		d = m[p]
	}
	return d
}

func TestEveryMethodAndFieldIsInTheDocument(t *testing.T) {
	d := doc(t)
	schemas := at(d, "components", "schemas")
	mapping := at(schemas, "Call", "discriminator", "mapping").(map[string]any)
	for _, m := range protocol.Methods() {
		if mapping[m.Name] != "#/components/schemas/"+CallSchema(m.Name) {
			t.Errorf("%s: not in the Call discriminator's mapping", m.Name)
		}
		if at(schemas, CallSchema(m.Name), "properties", "method", "const") != m.Name {
			t.Errorf("%s: no %s schema naming it", m.Name, CallSchema(m.Name))
		}
		if at(schemas, ResultSchema(m.Name)) == nil {
			t.Errorf("%s: no %s schema", m.Name, ResultSchema(m.Name))
		}
		if _, ok := crossRules[m.ParamsType()]; ok != m.CrossChecked() {
			t.Errorf("%s: its params have a rule across fields: %v, a row in crossRules: %v", m.Name, m.CrossChecked(), ok)
		}
		for _, f := range fieldsOf(m.ParamsType(), nil) {
			path := []string{ParamsSchema(m.Name)}
			for _, name := range f {
				path = append(path, "properties", name)
			}
			s, _ := at(schemas, path...).(map[string]any)
			if s["type"] == nil || s["description"] == nil {
				t.Errorf("%s: params.%s has no schema with a type and its rule in %s", m.Name, strings.Join(f, "."), ParamsSchema(m.Name))
			}
		}
	}
}

// fieldsOf lists the wire paths of every field of params struct t.
func fieldsOf(t reflect.Type, prefix []string) [][]string {
	var out [][]string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _ := jsonName(f)
		if name == "" {
			continue
		}
		path := append(slices.Clone(prefix), name)
		out = append(out, path)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, fieldsOf(ft, path)...)
		}
	}
	return out
}

// TestEveryErrorCodeIsInTheDocument reads the Code constants of
// shared/protocol from its source, so that a new code fails here until it
// has its row in errorCodes.
func TestEveryErrorCodeIsInTheDocument(t *testing.T) {
	codes := constants(t, "../../../shared/protocol", "Code")
	if len(codes) < 20 {
		t.Fatalf("found %d error codes in shared/protocol; the source scan is broken", len(codes))
	}
	d := doc(t)
	enum := at(d, "components", "schemas", "Error", "properties", "error", "properties", "code", "enum").([]any)
	responses := at(d, "paths", "/", "post", "responses").(map[string]any)
	for _, code := range codes {
		if !slices.Contains(enum, any(code)) {
			t.Errorf("error code %s is not in the Error schema: add it to errorCodes", code)
		}
		found := false
		for status, r := range responses {
			allOf, _ := at(r, "content", "application/json", "schema", "allOf").([]any)
			if len(allOf) == 2 && slices.Contains(at(allOf[1], "properties", "error", "properties", "code", "enum").([]any), any(code)) {
				found = true
				if _, err := strconv.Atoi(status); err != nil {
					t.Errorf("response %q is not a status", status)
				}
			}
		}
		if !found {
			t.Errorf("error code %s is in no response of /", code)
		}
	}
}

// constants are the string values of the package-level constants of the
// non-test files in dir whose names start with prefix.
func constants(t *testing.T, dir, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range parseDir(t, dir) {
		for _, decl := range f.Decls {
			g, ok := decl.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !strings.HasPrefix(n.Name, prefix) || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						out[n.Name], _ = strconv.Unquote(lit.Value)
					}
				}
			}
		}
	}
	return out
}

func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// fiberHeaders are the Fiber header constants the gateway names.
var fiberHeaders = map[string]string{
	"HeaderAuthorization": "Authorization", "HeaderXRequestID": "X-Request-Id",
	"HeaderRetryAfter": "Retry-After", "HeaderAllow": "Allow", "HeaderCacheControl": "Cache-Control",
	"HeaderContentEncoding": "Content-Encoding", "HeaderContentType": "Content-Type",
	"HeaderETag": "ETag", "HeaderIfNoneMatch": "If-None-Match", "HeaderUserAgent": "User-Agent",
}

// headersUsed are the header names the package in dir reads or writes:
// the first argument of its Get, Set and Peek calls (a string, a constant
// of the package or a Fiber constant) and its Header constants.
func headersUsed(t *testing.T, dir string) map[string]bool {
	t.Helper()
	consts := constants(t, dir, "")
	used := map[string]bool{}
	for name, v := range consts {
		if strings.HasPrefix(name, "Header") && !strings.HasPrefix(name, "HeaderBytes") {
			used[v] = true
		}
	}
	for _, f := range parseDir(t, dir) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !slices.Contains([]string{"Get", "Set", "Peek"}, sel.Sel.Name) {
				return true
			}
			switch a := call.Args[0].(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(a.Value); err == nil && a.Kind == token.STRING {
					used[s] = true
				}
			case *ast.Ident:
				if v, ok := consts[a.Name]; ok {
					used[v] = true
				}
			case *ast.SelectorExpr:
				if x, ok := a.X.(*ast.Ident); ok && x.Name == "fiber" {
					v, ok := fiberHeaders[a.Sel.Name]
					if !ok {
						t.Errorf("%s names fiber.%s: add it to fiberHeaders", dir, a.Sel.Name)
					}
					used[v] = true
				}
			}
			return true
		})
	}
	return used
}

// TestEveryHeaderIsInTheDocument holds the document to the headers the
// gateway's code reads and writes, and to those the SPEC names.
func TestEveryHeaderIsInTheDocument(t *testing.T) {
	d := doc(t)
	documented := map[string]bool{}
	params := at(d, "components", "parameters").(map[string]any)
	for _, ops := range at(d, "paths").(map[string]any) {
		for _, op := range ops.(map[string]any) {
			for _, p := range at(op, "parameters").([]any) {
				if r, ok := at(p, "$ref").(string); ok {
					p = params[strings.TrimPrefix(r, "#/components/parameters/")]
				}
				documented[strings.ToLower(at(p, "name").(string))] = true
			}
			for _, r := range at(op, "responses").(map[string]any) {
				headers, _ := at(r, "headers").(map[string]any)
				for name := range headers {
					documented[strings.ToLower(name)] = true
				}
			}
		}
	}
	documented[strings.ToLower(at(d, "components", "securitySchemes", "apiKey", "name").(string))] = true
	if at(d, "components", "securitySchemes", "bearer", "scheme") == "bearer" {
		documented["authorization"] = true
	}
	documented["content-type"] = true // the media type of every body
	want := headersUsed(t, "../api")
	for h := range headersUsed(t, "../signing") {
		want[h] = true
	}
	if len(want) < 12 {
		t.Fatalf("found %d headers in the gateway's code (%v); the source scan is broken", len(want), want)
	}
	for _, h := range []string{"x-api-key", "Authorization", "Idempotency-Key", "X-Request-Id", "traceparent",
		"X-Signature-Timestamp", "X-Signature-Nonce", "X-Signature", "Idempotent-Replayed",
		"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"} {
		want[h] = true
	}
	for h := range want {
		if !documented[strings.ToLower(h)] {
			t.Errorf("header %s is not in the document: add it to headers.go", h)
		}
	}
	// The webhook headers, on every event.
	for _, hook := range at(d, "webhooks").(map[string]any) {
		var names []string
		for _, p := range at(hook, "post", "parameters").([]any) {
			names = append(names, at(p, "name").(string))
		}
		for _, h := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
			if !slices.Contains(names, h) {
				t.Errorf("webhook events do not carry %s", h)
			}
		}
	}
}

func TestWebhookEventsAreInTheDocument(t *testing.T) {
	d := doc(t)
	for _, e := range []string{EventSucceeded, EventFailed, EventPing} {
		if at(d, "webhooks", e, "post", "requestBody") == nil {
			t.Errorf("webhook event %s is not in the document", e)
		}
	}
}

// TestEveryMethodHasAnExampleTheGatewayAccepts: the document's example call
// of each method names every param and passes the gateway's validation.
func TestEveryMethodHasAnExampleTheGatewayAccepts(t *testing.T) {
	d := doc(t)
	examples := at(d, "paths", "/", "post", "requestBody", "content", "application/json", "examples").(map[string]any)
	for _, m := range protocol.Methods() {
		call, _ := at(examples, m.Name, "value").(map[string]any)
		if call["method"] != m.Name {
			t.Errorf("%s: no example call", m.Name)
			continue
		}
		params, _ := json.Marshal(call["params"])
		if _, e := m.Decode(params); e != nil {
			t.Errorf("%s: example params %s refused: %v", m.Name, params, e)
		}
		for _, f := range fieldsOf(m.ParamsType(), nil) {
			path := append([]string{"params"}, f...)
			if at(call, path...) == nil {
				t.Errorf("%s: the example has no %s", m.Name, strings.Join(path, "."))
			}
		}
	}
}
