// Package console is the partner console (SPEC section 6): a small page the
// gateway serves at /console, embedded in the binary, that a partner opens
// with its own key to see its recent calls, their webhook events and
// delivery attempts, and to replay an event. The page calls the public API
// (POST / with the key in x-api-key) from the same origin; the key is kept
// in the tab's sessionStorage only, never in a URL or a cookie. It loads no
// outside resource, renders every value as text, and is served with a
// strict Content-Security-Policy and may not be framed.
package console

import (
	"crypto/sha256"
	"embed"
	"fmt"
	"net/http"
	"path"

	"github.com/gofiber/fiber/v2"
)

//go:embed static
var files embed.FS

// Headers of every console response.
const (
	CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

// asset is one embedded file with its type and ETag.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// assets are the files by their path under /console.
var assets = func() map[string]asset {
	out := map[string]asset{}
	for name, ctype := range map[string]string{
		"index.html":  "text/html; charset=utf-8",
		"console.js":  "text/javascript; charset=utf-8",
		"console.css": "text/css; charset=utf-8",
		"favicon.svg": "image/svg+xml",
	} {
		b, err := files.ReadFile(path.Join("static", name))
		if err != nil {
			panic(err)
		}
		out[name] = asset{body: b, ctype: ctype, etag: fmt.Sprintf(`"%x"`, sha256.Sum256(b))[:18] + `"`}
	}
	return out
}()

// Register serves the console at GET /console and its files under
// /console/, without a key: the page holds nothing secret.
func Register(app *fiber.App) {
	app.Add(fiber.MethodGet, "/console", func(c *fiber.Ctx) error { return serve(c, "index.html") })
	app.Add(fiber.MethodGet, "/console/:file", func(c *fiber.Ctx) error { return serve(c, c.Params("file")) })
}

func serve(c *fiber.Ctx, name string) error {
	a, ok := assets[name]
	if !ok {
		return c.Next() // the API's 404
	}
	c.Set(fiber.HeaderContentSecurityPolicy, CSP)
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set("Cross-Origin-Opener-Policy", "same-origin")
	c.Set("Cross-Origin-Resource-Policy", "same-origin")
	c.Set(fiber.HeaderPermissionsPolicy, "camera=(), microphone=(), geolocation=(), payment=()")
	// Revalidated on every load: a new gateway's page is taken at once.
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderETag, a.etag)
	if c.Get(fiber.HeaderIfNoneMatch) == a.etag {
		return c.SendStatus(http.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, a.ctype)
	return c.Status(http.StatusOK).Send(a.body)
}
