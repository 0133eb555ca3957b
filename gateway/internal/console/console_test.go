package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func app() *fiber.App {
	a := fiber.New(fiber.Config{DisableStartupMessage: true})
	Register(a)
	a.Use(func(c *fiber.Ctx) error { return c.SendStatus(http.StatusNotFound) })
	return a
}

func get(t *testing.T, a *fiber.App, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := a.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestConsoleIsServedWithoutAKeyUnderAStrictPolicy: the page and its two
// files answer 200 with their types, a CSP that allows only this origin's
// scripts, styles and API calls, and may not be framed.
func TestConsoleIsServedWithoutAKeyUnderAStrictPolicy(t *testing.T) {
	a := app()
	for path, ctype := range map[string]string{
		"/console": "text/html", "/console/console.js": "text/javascript", "/console/console.css": "text/css",
		"/console/favicon.svg": "image/svg+xml",
	} {
		resp := get(t, a, path)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Fatalf("GET %s: %d %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		for h, want := range map[string]string{
			"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
			"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("GET %s: %s %q, want %q", path, h, got, want)
			}
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("GET %s sets a cookie", path)
		}
		etag := resp.Header.Get("ETag")
		if r := get(t, a, path, "If-None-Match", etag); etag == "" || r.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag %q: %d, want 304", path, etag, r.StatusCode)
		}
	}
	for _, path := range []string{"/console/nope.js", "/console/../go.mod", "/console/static"} {
		if resp := get(t, a, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	for _, d := range []string{"script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "form-action 'none'", "default-src 'none'"} {
		if !strings.Contains(CSP, d) {
			t.Errorf("CSP %q lacks %q", CSP, d)
		}
	}
}

// TestConsoleRendersTextOnlyAndLoadsNothingFromOutside reads the page's
// files: no HTML is parsed from data, no outside URL is loaded, and the key
// goes only to sessionStorage and the x-api-key header.
func TestConsoleRendersTextOnlyAndLoadsNothingFromOutside(t *testing.T) {
	for name := range assets {
		b, err := files.ReadFile("static/" + name)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
			"new Function", "localStorage", "document.cookie", "http://", "https://", "//cdn", "@import", "url("} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
		if regexp.MustCompile(`(?i)<script>|\son[a-z]+=|style=`).MatchString(s) {
			t.Errorf("%s has an inline script, handler or style (the CSP refuses them)", name)
		}
	}
	js, _ := files.ReadFile("static/console.js")
	if !strings.Contains(string(js), "'x-api-key': key") || !strings.Contains(string(js), "sessionStorage.setItem(KEY, key)") ||
		strings.Contains(string(js), "location.") || strings.Contains(string(js), "?key") {
		t.Error("console.js must send the key only in x-api-key and keep it only in sessionStorage")
	}
}
