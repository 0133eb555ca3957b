package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A TestHost is a process's own network host on this machine: a network
// namespace with one veth pair to the host (the "front", never cut) where the
// process's listeners are reached, and one veth pair per dependency, a link
// that can be cut. Inside, the process reaches a dependency at the host side
// of its link; there a forwarder of this program copies the bytes to the
// server on loopback (the servers listen on loopback only).
//
// Cut takes the host side of a link down: its peer in the namespace loses
// its carrier, and every packet either way is dropped without a word, no RST
// and no FIN, as when a cable or a switch port dies. The forwarder keeps its
// sockets open meanwhile, so both ends learn of the cut only by their own
// time-outs. Restore brings it up again and what was sent is retransmitted.
//
// The namespace sees only its links: it has no default route, and the
// host holds a blackhole route for the namespace's addresses, so that nothing
// meant for a test host leaves this machine while a link is down. Needs root
// (ip netns, ip link); Close removes the namespace, the veth pairs and the
// route.
type TestHost struct {
	Name  string // of the network namespace
	Front string // the process's address on the front link, to bind its listeners to

	prefix netip.Prefix // a /24, one /30 per link
	tag    string       // unique part of the interface names
	links  map[string]*Link
	order  []string
}

// Link is one dependency's link of a TestHost.
type Link struct {
	Name   string // of the dependency
	Addr   string // host:port the process dials for it
	Target string // the server on loopback
	dev    string // host side of the veth pair
	ln     net.Listener

	mu    sync.Mutex
	conns map[net.Conn]bool
	down  bool
	wg    sync.WaitGroup
}

// TestHostsUsable says why test hosts cannot be made here (nil: they can):
// they need root and the ip command.
func TestHostsUsable() error {
	if os.Geteuid() != 0 {
		return errors.New("test hosts (network namespaces, veth pairs) need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("test hosts need the ip command (iproute2): %w", err)
	}
	return nil
}

// RequireTestHosts fails the test when test hosts cannot be made under CI,
// and skips it elsewhere (a developer without root).
func RequireTestHosts(t testing.TB) {
	t.Helper()
	if err := TestHostsUsable(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: %v", err)
		}
		t.Skipf("%v (CI fails here)", err)
	}
}

// NewTestHost makes a test host with a link for each dependency, name to
// the server's loopback host:port. On error nothing is left.
func NewTestHost(ctx context.Context, deps map[string]string) (h *TestHost, err error) {
	if err := TestHostsUsable(); err != nil {
		return nil, err
	}
	tag := randomTag()
	h = &TestHost{Name: "oo-" + tag, tag: tag, links: map[string]*Link{}}
	if h.prefix, err = freePrefix(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.Close(context.Background()))
		}
	}()
	if err := ipCmd(ctx, "netns", "add", h.Name); err != nil {
		return nil, err
	}
	if err := ipCmd(ctx, "route", "add", "blackhole", h.prefix.String()); err != nil {
		return nil, err
	}
	if err := ipCmd(ctx, "-n", h.Name, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	_, front, err := h.veth(ctx, 0)
	if err != nil {
		return nil, err
	}
	h.Front = front.String()
	i := 1
	for name := range deps {
		h.order = append(h.order, name)
	}
	slices.Sort(h.order)
	for _, name := range h.order {
		if i >= 64 {
			return nil, errors.New("test host: 63 links at most")
		}
		if err := h.addLink(ctx, i, name, deps[name]); err != nil {
			return nil, fmt.Errorf("link %s: %w", name, err)
		}
		i++
	}
	return h, nil
}

// veth makes pair i: host side .4i+1, namespace side .4i+2 of the /24,
// both up; the namespace side knows the host side's MAC address for good,
// so that a link cut is silence and not an ARP failure reported as
// "no route to host".
func (h *TestHost) veth(ctx context.Context, i int) (hostAddr, nsAddr netip.Addr, err error) {
	base := h.prefix.Addr().As4()
	base[3] = byte(4*i + 1)
	hostAddr = netip.AddrFrom4(base)
	base[3]++
	nsAddr = netip.AddrFrom4(base)
	hdev, ndev := fmt.Sprintf("oo%sh%d", h.tag, i), fmt.Sprintf("oo%sn%d", h.tag, i)
	steps := [][]string{
		{"link", "add", hdev, "type", "veth", "peer", "name", ndev, "netns", h.Name},
		{"addr", "add", hostAddr.String() + "/30", "dev", hdev},
		{"link", "set", hdev, "up"},
		{"-n", h.Name, "addr", "add", nsAddr.String() + "/30", "dev", ndev},
		{"-n", h.Name, "link", "set", ndev, "up"},
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			return hostAddr, nsAddr, err
		}
	}
	mac, err := net.InterfaceByName(hdev)
	if err != nil {
		return hostAddr, nsAddr, err
	}
	err = ipCmd(ctx, "-n", h.Name, "neigh", "replace", hostAddr.String(), "lladdr", mac.HardwareAddr.String(),
		"dev", ndev, "nud", "permanent")
	return hostAddr, nsAddr, err
}

func (h *TestHost) addLink(ctx context.Context, i int, name, target string) error {
	hostAddr, _, err := h.veth(ctx, i)
	if err != nil {
		return err
	}
	_, port, err := net.SplitHostPort(target)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(hostAddr.String(), port))
	if err != nil {
		return err
	}
	l := &Link{Name: name, Addr: ln.Addr().String(), Target: target, dev: fmt.Sprintf("oo%sh%d", h.tag, i),
		ln: ln, conns: map[net.Conn]bool{}}
	h.links[name] = l
	l.wg.Add(1)
	go l.serve()
	return nil
}

// Link returns the link of dependency name, nil if there is none.
func (h *TestHost) Link(name string) *Link { return h.links[name] }

// Links are the dependencies' names, in the order their links were made.
func (h *TestHost) Links() []string { return h.order }

// Exec is the command line that runs argv inside the namespace.
func (h *TestHost) Exec(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", h.Name}, argv...)
}

// DialContext connects to addr from inside the namespace, as the process
// there would: the socket belongs to the namespace for good. The dial runs
// on an OS thread of its own that is moved into the namespace and ends
// with it.
func (h *TestHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is dropped when this goroutine ends
		ns, err := os.Open("/run/netns/" + h.Name)
		if err != nil {
			res <- result{nil, err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- result{nil, fmt.Errorf("enter %s: %w", h.Name, err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}

// RewriteURL points the host of raw, a dependency's URL, at link name.
func (h *TestHost) RewriteURL(raw, name string) (string, error) {
	l := h.links[name]
	if l == nil {
		return "", fmt.Errorf("test host %s has no link %q", h.Name, name)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	u.Host = l.Addr
	return u.String(), nil
}

// Cut takes link name's carrier away: every packet either way is dropped.
func (h *TestHost) Cut(ctx context.Context, name string) error {
	return h.setLink(ctx, name, "down")
}

// Restore brings link name back.
func (h *TestHost) Restore(ctx context.Context, name string) error {
	return h.setLink(ctx, name, "up")
}

func (h *TestHost) setLink(ctx context.Context, name, state string) error {
	l := h.links[name]
	if l == nil {
		return fmt.Errorf("test host %s has no link %q", h.Name, name)
	}
	return ipCmd(ctx, "link", "set", l.dev, state)
}

// Close stops the forwarders and removes the namespace (its veth pairs go
// with it) and the blackhole route. Run it after the process in it stopped.
func (h *TestHost) Close(ctx context.Context) error {
	var errs []error
	for _, l := range h.links {
		l.close()
	}
	if h.prefix.IsValid() {
		if err := ipCmd(ctx, "route", "del", "blackhole", h.prefix.String()); err != nil && !strings.Contains(err.Error(), "No such process") {
			errs = append(errs, err)
		}
	}
	if err := ipCmd(ctx, "netns", "del", h.Name); err != nil && !strings.Contains(err.Error(), "No such file") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// serve accepts the process's connections and forwards each to the target.
func (l *Link) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1)
		go l.forward(c)
	}
}

func (l *Link) forward(c net.Conn) {
	defer l.wg.Done()
	t, err := net.DialTimeout("tcp", l.Target, 5*time.Second)
	if err != nil {
		c.Close() // the server is down: the process sees its connection end, as it would
		return
	}
	if !l.track(c, t) {
		return
	}
	defer l.untrack(c, t)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(t, c)
	go pipe(c, t)
	<-done
	<-done
}

func (l *Link) track(cs ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		l.conns[c] = true
	}
	return true
}

func (l *Link) untrack(cs ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(l.conns, c)
	}
}

func (l *Link) close() {
	l.mu.Lock()
	l.down = true
	l.ln.Close()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// randomTag is 6 hex digits, unique enough per run for the interface and
// namespace names (an interface name holds 15 bytes).
func randomTag() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// freePrefix picks a /24 of 10.200.0.0/13 that no route of this host
// touches yet.
func freePrefix(ctx context.Context) (netip.Prefix, error) {
	out, err := exec.CommandContext(ctx, "ip", "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip route: %v: %s", err, out)
	}
	taken := string(out)
	for range 64 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + mrand.IntN(8)), byte(mrand.IntN(256)), 0}), 24)
		if !strings.Contains(taken, strings.TrimSuffix(p.Addr().String(), ".0")+".") {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("no free /24 in 10.200.0.0/13 for a test host")
}

func ipCmd(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
