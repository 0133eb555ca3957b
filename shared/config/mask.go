package config

import (
	"net/url"
	"regexp"
	"strings"
)

// masked replaces every secret Mask hides.
const masked = "xxxxx"

// Mask hides the passwords of a connection string so that it can be printed:
// the password of a URL's user, the values of secret-looking query parameters
// and key=value settings (password=..., as libpq DSNs write it), in each URL of
// a comma-separated list. A string it cannot read for sure is masked more than
// needed rather than less: an unparseable URL loses everything from its user's
// first colon to the last @, so a password holding a / ? # or @ is covered too.
func Mask(raw string) string {
	parts := splitURLs(raw)
	for i, p := range parts {
		parts[i] = maskOne(p)
	}
	return strings.Join(parts, ",")
}

// listSep finds where the next URL of a comma-separated list starts (AMQP_URL
// may name several cluster nodes). A comma inside one URL, as in PostgreSQL's
// host1,host2 lists, is not followed by a scheme and does not split.
var listSep = regexp.MustCompile(`,\s*[A-Za-z][A-Za-z0-9+.-]*://`)

func splitURLs(raw string) []string {
	var parts []string
	for {
		loc := listSep.FindStringIndex(raw)
		if loc == nil {
			return append(parts, raw)
		}
		parts = append(parts, raw[:loc[0]])
		raw = raw[loc[0]+1:]
	}
}

func maskOne(s string) string {
	if u, ok := parseURL(s); ok {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), masked)
		}
		u.RawQuery = maskQuery(u.RawQuery)
		return u.String()
	}
	return maskSettings(maskUserinfo(s))
}

// parseURL parses s when its parts are certain: a scheme, an authority, and
// no @ past it. An @ in the path, query or fragment may end a user's password
// that holds a / ? or #, which the parser took for the end of the authority
// ("amqp://u:12?34@h" parses as host u, port 12), so such a URL is not read
// as parsed.
func parseURL(s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return nil, false
	}
	if strings.Contains(u.Path+u.RawPath+u.RawQuery+u.Fragment, "@") {
		return nil, false
	}
	return u, true
}

// secretName matches the names of settings and query parameters whose value
// is a secret: password, passwd, pwd, sslpassword, secret, token, api_key...
var secretName = regexp.MustCompile(`(?i)(pass|pwd|secret|token|auth|key)`)

// queryParam is one name=value of a raw query; & and ; both separate them.
var queryParam = regexp.MustCompile(`([^&;=]*)=([^&;]*)`)

// maskQuery masks the values of secret parameters of a URL's raw query,
// keeping the others and their order as written.
func maskQuery(q string) string {
	return queryParam.ReplaceAllStringFunc(q, func(p string) string {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if secretName.MatchString(name) {
			return p[:strings.Index(p, "=")+1] + masked
		}
		return p
	})
}

// maskUserinfo masks the password of a URL the parser could not read, or of a
// user:pass@host without a scheme: everything from the first colon of the
// user part to the last @.
func maskUserinfo(s string) string {
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + len("://")
	}
	at := strings.LastIndex(s[start:], "@")
	if at < 0 {
		return s
	}
	colon := strings.Index(s[start:start+at], ":")
	if colon < 0 {
		return s
	}
	return s[:start+colon+1] + masked + s[start+at:]
}

// setting matches a secret key=value setting of a DSN, or of the query of a
// URL that did not parse: the value runs to the next blank, or is quoted the
// way libpq quotes it (a quote inside doubled or after a backslash). An
// unquoted value in a query thus takes the rest of the query with it, which
// masks more, never less.
var setting = regexp.MustCompile(`(?i)([A-Za-z0-9_.-]*(?:pass|pwd|secret|token|auth|key)[A-Za-z0-9_.-]*\s*=\s*)('(?:[^'\\]|\\.|'')*'?|"[^"]*"?|\S*)`)

func maskSettings(s string) string {
	return setting.ReplaceAllString(s, "${1}"+masked)
}
