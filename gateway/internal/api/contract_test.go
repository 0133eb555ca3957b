package api

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/oneoffice/provisioner/gateway/internal/openapi"
)

// TestTheContractIsServedWithoutAKey: GET /openapi.json answers the
// committed document to anyone, and a client holding it revalidates by its
// ETag; other verbs on it are not routed.
func TestTheContractIsServedWithoutAKey(t *testing.T) {
	t.Parallel()
	app, fake := newTestApp(t)
	get := func(headers ...string) (*http.Response, []byte) {
		req := httptest.NewRequest(http.MethodGet, "/openapi.json", nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := app.Test(req, 5000)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, openapi.JSON) {
		t.Fatalf("GET /openapi.json without a key: %d, %d bytes; want 200 and the %d bytes of openapi.json", resp.StatusCode, len(body), len(openapi.JSON))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("ETag %q, Cache-Control %q; want an ETag and no-cache", etag, resp.Header.Get("Cache-Control"))
	}
	if resp, body := get("If-None-Match", etag); resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match its ETag: %d with %d bytes, want 304 and no body", resp.StatusCode, len(body))
	}
	if resp, _ := get("If-None-Match", `"other"`); resp.StatusCode != http.StatusOK {
		t.Errorf("If-None-Match another ETag: %d, want 200", resp.StatusCode)
	}
	req := httptest.NewRequest(http.MethodPost, "/openapi.json", nil)
	if resp, err := app.Test(req, 5000); err != nil {
		t.Error(err)
	} else if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /openapi.json: %d, want 404", resp.StatusCode)
	}
	if n := fake.calls.Load(); n != 0 {
		t.Errorf("the document sent %d commands", n)
	}
}
