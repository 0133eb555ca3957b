package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"
)

// MaxURLLen bounds an endpoint's URL.
const MaxURLLen = 2000

// ErrRefused marks a call the policy refused: a URL or an address that may
// not be called. It is never retried into success by waiting, but DNS may
// change, so a delivery refused at dial time is retried like any other.
var ErrRefused = errors.New("refused by the webhook policy")

// Policy says which endpoints may be called. Endpoints must be https on a
// public address. The hosts of AllowHosts (WEBHOOK_ALLOW_HOSTS: tests, local
// runs) may also be http and resolve to private, loopback or link-local
// addresses.
type Policy struct {
	// AllowHosts are host names or IP literals, compared case-insensitively
	// with the URL's host (without its port).
	AllowHosts []string
}

func (p Policy) allowed(host string) bool {
	return slices.ContainsFunc(p.AllowHosts, func(h string) bool { return strings.EqualFold(h, host) })
}

// CheckURL refuses a URL that may not be an endpoint, naming the rule. An IP
// literal is checked here; a name is checked again at each dial, where its
// addresses are known.
func (p Policy) CheckURL(raw string) error {
	if len(raw) > MaxURLLen {
		return fmt.Errorf("%w: the URL must be at most %d characters", ErrRefused, MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%w: the URL must be an absolute https URL such as https://example.com/hooks", ErrRefused)
	}
	if u.User != nil {
		return fmt.Errorf("%w: the URL must not carry a user or password", ErrRefused)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%w: the URL must not carry a fragment", ErrRefused)
	}
	host := u.Hostname()
	if p.allowed(host) {
		return nil
	}
	if u.Scheme != "https" {
		return fmt.Errorf("%w: the URL must be https (http only for a host in WEBHOOK_ALLOW_HOSTS)", ErrRefused)
	}
	if ip, err := netip.ParseAddr(host); err == nil && !public(ip) {
		return fmt.Errorf("%w: %s is a private, loopback or link-local address (allowed only in WEBHOOK_ALLOW_HOSTS)", ErrRefused, host)
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return fmt.Errorf("%w: %s is a loopback name (allowed only in WEBHOOK_ALLOW_HOSTS)", ErrRefused, host)
	}
	return nil
}

// public reports an address that may be called without being allowed: not
// private, loopback, link-local, multicast, unspecified or otherwise
// reserved for local use.
func public(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range reserved {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// reserved are further ranges that reach no public host: "this network",
// carrier-grade NAT, benchmarking, IETF protocol assignments, the
// documentation ranges, the old 6to4 relay and the reserved 240/4.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("192.88.99.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// control refuses, at the moment of connecting, an address that is not
// public: it sees the address the name resolved to, so a name that resolves
// to a public address when checked and to a private one when called (DNS
// rebinding) is refused too.
func control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unreadable address %q", ErrRefused, address)
	}
	if !public(ap.Addr()) {
		return fmt.Errorf("%w: %s is a private, loopback or link-local address", ErrRefused, ap.Addr())
	}
	return nil
}

// Client returns the HTTP client deliveries go through: each call within
// timeout, no proxy, redirects not followed (a 3xx is an answer like any
// other non-2xx), and every connection's address checked by the policy.
func (p Policy) Client(timeout time.Duration) *http.Client {
	strict := &net.Dialer{Timeout: timeout, Control: control}
	loose := &net.Dialer{Timeout: timeout}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if p.allowed(host) {
			return loose.DialContext(ctx, network, addr)
		}
		return strict.DialContext(ctx, network, addr)
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dial,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
