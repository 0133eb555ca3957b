package testenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Defaults of StackConfig.
const (
	DefaultStackName = "stack"
	// DefaultAdminTimeout bounds one gateway admin subcommand (migrate,
	// keys create).
	DefaultAdminTimeout = 2 * time.Minute
	// DefaultCloseTimeout bounds the undo of a stack: the processes drain
	// for up to DefaultStopTimeout each, then the rest is removed.
	DefaultCloseTimeout = 3 * time.Minute
	// startAttempts is how often a process whose picked port was taken
	// before it bound it is started again on new ports.
	startAttempts = 3
)

// WebhookKey is the WEBHOOK_SECRET_KEY of every stack: a test key, 32 bytes
// in base64, so that webhooks can be set on any stack.
const WebhookKey = "dGVzdGVudi1zdGFjay13ZWJob29rLWtleS0zMmJ5dGU="

// validStackName leaves room for the suffix Name adds, within validName.
var validStackName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)

// StackConfig is an isolated deployment to bring up with UpStack.
type StackConfig struct {
	// Name prefixes the database and vhost (made unique with Name), the
	// work directory, the Redis claim's owner; default DefaultStackName.
	// Lower-case letters, digits and _.
	Name string
	// Partner is the partner whose API key is created; default Name.
	Partner string
	// Workers is how many worker processes run; default 1.
	Workers int
	// Gateways is how many gateway processes run, each on its own API
	// address; default 1.
	Gateways int
	// Env is added to what every process and admin subcommand gets, after
	// the stack's own DATABASE_URL, AMQP_URL, REDIS_URL, HTTP_ADDR and
	// STORAGE_ROOT, so it can override them.
	Env []string
	// AMQPURL, when set, is the AMQP_URL of the processes (a cluster's
	// nodes, say) and no vhost is made; by default a new vhost on
	// Servers.AMQPURL.
	AMQPURL string
	// RedisDB is the Redis DB to claim; 0 claims the first free one.
	RedisDB int
	// Bins, when its Dir is set, are the binaries to run; by default those
	// of this tree are built into the work directory.
	Bins Binaries
	// Keep leaves the work directory (binaries, process logs) at Close.
	Keep bool
	// StorageDir is where the STORAGE_ROOT directory is made, and removed
	// at Close whatever Keep says; "" puts it in the work directory.
	StorageDir string
	// LogFiles writes each process's output to <name>.log in the work
	// directory; by default it is kept in memory (Proc.Log).
	LogFiles bool
	// SysProcAttr is handed to every process (ProcConfig.SysProcAttr).
	SysProcAttr *syscall.SysProcAttr
	// ReadyTimeout and StopTimeout are those of every process (ProcConfig).
	ReadyTimeout, StopTimeout time.Duration
	// AdminTimeout bounds one admin subcommand; default DefaultAdminTimeout.
	AdminTimeout time.Duration
	// CloseTimeout bounds the undo when UpStack fails half way; default
	// DefaultCloseTimeout.
	CloseTimeout time.Duration
	// Hosts names the processes ("gateway", "worker-1", ...) that run each
	// on a test host of its own (TestHost, root only), reaching PostgreSQL,
	// RabbitMQ and Redis over links that Stack.Host(name) can cut; the
	// others run on loopback.
	Hosts []string
	// Logf, when set, is told each step; default Servers.Logf.
	Logf func(format string, args ...any)
}

func (c StackConfig) withDefaults(s Servers) (StackConfig, error) {
	c.Name = cmp.Or(c.Name, DefaultStackName)
	c.Partner = cmp.Or(c.Partner, c.Name)
	c.Workers = cmp.Or(c.Workers, 1)
	c.Gateways = cmp.Or(c.Gateways, 1)
	c.AdminTimeout = cmp.Or(c.AdminTimeout, DefaultAdminTimeout)
	c.CloseTimeout = cmp.Or(c.CloseTimeout, DefaultCloseTimeout)
	if c.Logf == nil {
		c.Logf = s.logf
	}
	if !validStackName.MatchString(c.Name) {
		return c, fmt.Errorf("stack name %q: want up to 41 lower-case letters, digits and _", c.Name)
	}
	if c.Workers < 0 || c.Gateways < 0 {
		return c, fmt.Errorf("stack workers %d, gateways %d: want 1 or more", c.Workers, c.Gateways)
	}
	return c, nil
}

// Stack is one isolated deployment on the shared servers: its own database,
// vhost (unless StackConfig.AMQPURL) and claimed Redis DB, the gateway and
// worker binaries of this tree, a partner's API key, the workers and the
// gateways on free loopback ports.
type Stack struct {
	Name        string   // of the database and the vhost
	Dir         string   // the work directory: binaries, process logs
	StorageRoot string   // STORAGE_ROOT of the processes
	Bins        Binaries // in Dir unless StackConfig.Bins

	DatabaseURL string
	AMQPURL     string
	RedisURL    string
	RedisDB     int
	HTTPAddr    string   // the (first) gateway's API, host:port
	APIs        []string // every gateway's API, host:port
	Key         string   // the partner's API key

	Gateway  *Proc   // the first gateway
	Gateways []*Proc // all of them, in the order of APIs
	Workers  []*Proc

	cfg   StackConfig
	srv   Servers
	undo  Teardown
	hosts map[string]*TestHost
}

// Links of a stack's test host, by dependency.
const (
	LinkPostgres = "postgres"
	LinkRabbitMQ = "rabbitmq"
	LinkRedis    = "redis"
)

// Host is the test host of the process called name, nil when it runs on
// loopback (StackConfig.Hosts).
func (st *Stack) Host(name string) *TestHost { return st.hosts[name] }

// UpStack makes the stack step by step and starts its processes, each
// waited for until its /readyz answers. When a step fails, what the earlier
// ones made is undone, last first, within cfg.CloseTimeout, and the error
// says which step failed.
func (s Servers) UpStack(ctx context.Context, cfg StackConfig) (*Stack, error) {
	cfg, err := cfg.withDefaults(s)
	if err != nil {
		return nil, err
	}
	st := &Stack{Name: Name(cfg.Name), cfg: cfg, srv: s}
	if err := st.up(ctx); err != nil {
		cfg.Logf("%v; undoing what was made", err)
		return nil, errors.Join(err, st.Close(cfg.CloseTimeout))
	}
	return st, nil
}

func (st *Stack) up(ctx context.Context) error {
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"work directory", st.makeDirs},
		{"database", st.createDatabase},
		{"vhost", st.createVhost},
		{"redis", st.claimRedis},
		{"build", st.build},
		{"migrate", st.migrate},
		{"key", st.createKey},
		{"processes", st.startProcesses},
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		st.cfg.Logf("stack: %s", step.what)
		if err := step.do(ctx); err != nil {
			return fmt.Errorf("stack: %s: %w", step.what, err)
		}
	}
	return nil
}

// Close stops the processes and removes the Redis data and claim, the vhost,
// the database and the directories, in reverse order of their making, all
// within timeout (DefaultCloseTimeout if 0), and returns the errors joined.
// A second call does nothing.
func (st *Stack) Close(timeout time.Duration) error {
	return st.undo.Run(cmp.Or(timeout, DefaultCloseTimeout))
}

// KeepDir keeps the work directory at Close, whatever StackConfig.Keep said:
// a run that went wrong keeps its process logs.
func (st *Stack) KeepDir() { st.cfg.Keep = true }

// URL is the gateway's API base URL, ending in /.
func (st *Stack) URL() string { return "http://" + st.HTTPAddr + "/" }

// Env is what every process and admin subcommand of the stack gets on top of
// this program's environment.
func (st *Stack) Env() []string {
	return append([]string{
		"DATABASE_URL=" + st.DatabaseURL,
		"AMQP_URL=" + st.AMQPURL,
		"REDIS_URL=" + st.RedisURL,
		"HTTP_ADDR=" + st.HTTPAddr,
		"STORAGE_ROOT=" + st.StorageRoot,
		"WEBHOOK_SECRET_KEY=" + WebhookKey,
	}, st.cfg.Env...)
}

// Admin runs a gateway admin subcommand on the stack within AdminTimeout and
// returns its stdout, trimmed.
func (st *Stack) Admin(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, st.cfg.AdminTimeout)
	defer cancel()
	return Run(ctx, st.Bins.Gateway(), st.Env(), args...)
}

// Pids are the gateway's and the workers' process ids.
func (st *Stack) Pids() (gateway int, workers []int) {
	for _, w := range st.Workers {
		workers = append(workers, w.Pid())
	}
	return st.Gateway.Pid(), workers
}

// makeDirs makes the work directory and the storage root.
func (st *Stack) makeDirs(context.Context) error {
	dir, err := os.MkdirTemp("", "oneoffice-"+st.cfg.Name+"-")
	if err != nil {
		return err
	}
	st.Dir = dir
	st.undo.Add("remove "+dir, func(context.Context) error {
		if st.cfg.Keep {
			st.cfg.Logf("stack: kept %s", dir)
			return nil
		}
		return os.RemoveAll(dir)
	})
	st.StorageRoot = filepath.Join(dir, "tenants")
	if st.cfg.StorageDir != "" {
		root, err := os.MkdirTemp(st.cfg.StorageDir, "oneoffice-"+st.cfg.Name+"-tenants-")
		if err != nil {
			return err
		}
		st.StorageRoot = root
		st.undo.Add("remove "+root, func(context.Context) error { return os.RemoveAll(root) })
	}
	return os.MkdirAll(st.StorageRoot, 0o750)
}

func (st *Stack) createDatabase(ctx context.Context) error {
	dbURL, drop, err := st.srv.CreateDatabase(ctx, st.Name)
	if err != nil {
		return err
	}
	st.undo.Add("drop database "+st.Name, drop)
	st.DatabaseURL = dbURL
	return nil
}

// createVhost makes the stack's vhost, unless it was given broker URLs.
func (st *Stack) createVhost(ctx context.Context) error {
	if st.cfg.AMQPURL != "" {
		st.AMQPURL = st.cfg.AMQPURL
		return nil
	}
	amqpURL, del, err := st.srv.CreateVhost(ctx, st.Name)
	if err != nil {
		return err
	}
	st.undo.Add("delete vhost "+st.Name, del)
	st.AMQPURL = amqpURL
	return nil
}

func (st *Stack) claimRedis(ctx context.Context) error {
	r, err := st.srv.ClaimRedis(ctx, st.cfg.Name+" "+st.Name, st.cfg.RedisDB)
	if err != nil {
		return err
	}
	st.undo.Add(fmt.Sprintf("release Redis DB %d", r.DB), r.Release)
	st.RedisURL, st.RedisDB = r.URL, r.DB
	st.cfg.Logf("stack: Redis DB %d", r.DB)
	return nil
}

func (st *Stack) build(ctx context.Context) (err error) {
	if st.cfg.Bins.Dir != "" {
		st.Bins = st.cfg.Bins
		return nil
	}
	st.Bins, err = Build(ctx, st.Dir)
	return err
}

func (st *Stack) migrate(ctx context.Context) error {
	_, err := st.Admin(ctx, "migrate")
	return err
}

func (st *Stack) createKey(ctx context.Context) error {
	key, err := st.Admin(ctx, "keys", "create", "--partner", st.cfg.Partner)
	if err != nil {
		return err
	}
	if key == "" || strings.ContainsAny(key, " \n") {
		return fmt.Errorf("keys create printed %q, want only a key", key)
	}
	st.Key = key
	return nil
}

// startProcesses starts the workers, then the gateways, so that a gateway's
// first call finds a consumer.
func (st *Stack) startProcesses(ctx context.Context) error {
	for i := 1; i <= st.cfg.Workers; i++ {
		p, err := st.start(ctx, st.Bins.Worker(), fmt.Sprintf("worker-%d", i), false)
		if err != nil {
			return err
		}
		st.Workers = append(st.Workers, p)
	}
	for i := 1; i <= st.cfg.Gateways; i++ {
		name := "gateway"
		if st.cfg.Gateways > 1 {
			name = fmt.Sprintf("gateway-%d", i)
		}
		gw, err := st.start(ctx, st.Bins.Gateway(), name, true)
		if err != nil {
			return err
		}
		st.Gateways = append(st.Gateways, gw)
		st.cfg.Logf("stack: %s pid %d on %s", name, gw.Pid(), st.APIs[i-1])
	}
	st.Gateway, st.HTTPAddr = st.Gateways[0], st.APIs[0]
	_, workers := st.Pids()
	st.cfg.Logf("stack: worker pids %v", workers)
	return nil
}

// AddWorker starts one more worker, a replacement for one that was lost
// say, and waits for its /readyz; Close stops it with the rest.
func (st *Stack) AddWorker(ctx context.Context) (*Proc, error) {
	p, err := st.start(ctx, st.Bins.Worker(), fmt.Sprintf("worker-%d", len(st.Workers)+1), false)
	if err != nil {
		return nil, err
	}
	st.Workers = append(st.Workers, p)
	return p, nil
}

// start runs bin as name until its /readyz answers. A port picked free can
// be taken by someone else before the process binds it: then it is started
// again on new ports. A gateway (api) gets its HTTP_ADDR here, added to
// APIs.
func (st *Stack) start(ctx context.Context, bin, name string, api bool) (*Proc, error) {
	for attempt := 1; ; attempt++ {
		pc, addr := st.procConfig(bin, name), ""
		if slices.Contains(st.cfg.Hosts, name) {
			h, err := st.host(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("%s: test host: %w", name, err)
			}
			pc.Host, pc.MetricsAddr = h, net.JoinHostPort(h.Front, "9100")
			for _, link := range []struct{ name, env, url string }{
				{LinkPostgres, "DATABASE_URL", st.DatabaseURL}, {LinkRabbitMQ, "AMQP_URL", st.AMQPURL}, {LinkRedis, "REDIS_URL", st.RedisURL}} {
				u, err := h.RewriteURL(link.url, link.name)
				if err != nil {
					return nil, err
				}
				pc.Env = append(pc.Env, link.env+"="+u)
			}
			if api {
				addr = net.JoinHostPort(h.Front, "8080")
				pc.Env = append(pc.Env, "HTTP_ADDR="+addr)
			}
		} else if api {
			var err error
			if addr, err = PickAddr(); err != nil {
				return nil, err
			}
			pc.Env = append(pc.Env, "HTTP_ADDR="+addr)
		}
		p, err := StartProc(ctx, pc)
		if err == nil {
			st.undo.Add("stop "+name, p.Stop)
			if api {
				st.APIs = append(st.APIs, addr)
			}
			return p, nil
		}
		if attempt == startAttempts || !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
		st.cfg.Logf("stack: %s: a port it was given was taken meanwhile; starting it again", name)
	}
}

// host makes the test host of process name, once, with a link to each
// server of the stack; Close removes it after the process stopped.
func (st *Stack) host(ctx context.Context, name string) (*TestHost, error) {
	if h := st.hosts[name]; h != nil {
		return h, nil
	}
	deps := map[string]string{}
	for link, raw := range map[string]string{LinkPostgres: st.DatabaseURL, LinkRabbitMQ: st.AMQPURL, LinkRedis: st.RedisURL} {
		u, err := url.Parse(raw)
		if err != nil || strings.Contains(raw, ",") {
			return nil, fmt.Errorf("%s URL: a test host links one server, not a list", link)
		}
		deps[link] = u.Host
	}
	h, err := NewTestHost(ctx, deps)
	if err != nil {
		return nil, err
	}
	st.undo.Add("remove test host "+h.Name, h.Close)
	if st.hosts == nil {
		st.hosts = map[string]*TestHost{}
	}
	st.hosts[name] = h
	st.cfg.Logf("stack: %s on test host %s (%s), links %v", name, h.Name, h.Front, h.Links())
	return h, nil
}

func (st *Stack) procConfig(bin, name string) ProcConfig {
	pc := ProcConfig{Path: bin, Name: name, Env: st.Env(), SysProcAttr: st.cfg.SysProcAttr,
		ReadyTimeout: st.cfg.ReadyTimeout, StopTimeout: st.cfg.StopTimeout}
	if st.cfg.LogFiles {
		pc.LogFile = filepath.Join(st.Dir, name+".log")
	}
	return pc
}
