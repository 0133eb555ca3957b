// Command clustertest runs the provisioner against a three-node RabbitMQ
// cluster on this host and loses nodes under load (make cluster-test, through
// scripts/cluster-test.sh).
//
// It boots three nodes of the machine's RabbitMQ, each with its own node name,
// ports and directories (the main broker on 5672 is left alone), clusters them
// with stop_app / join_cluster / start_app, and starts two gateways and three
// workers whose AMQP_URL lists all three nodes, on their own database, Redis
// DB and vhost. Partner-like flows through both gateways (every method) run at
// a fixed rate while it:
//
//  1. stops the node leading the command queue (the whole node);
//  2. once the gateways serve again, starts that node back;
//  3. stops the app of the node then leading the queue (or another one);
//  4. once the gateways serve again, starts that app back.
//
// One node is down at a time, so the quorum queue keeps its majority. Then it
// lets the queue drain and checks from PostgreSQL that every 200 or 202 took
// effect exactly once and every 503 took none, that no call waited past
// RPC_TIMEOUT + 1s and that both gateways served again within 20s of each
// loss, prints the figures, and removes everything it made.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
)

// Limits the run is judged by.
const (
	// maxRecovery is how soon after a loss both gateways must serve again.
	maxRecovery = 20 * time.Second
	// overRPCTimeout is how far past RPC_TIMEOUT a call may take.
	overRPCTimeout = time.Second
	// drainLimit bounds the wait for the queue to empty after the load.
	drainLimit = 90 * time.Second
)

type config struct {
	tag        string // names the nodes, the vhost, the database
	work       string // node directories and process logs
	bin        string // the gateway and worker binaries
	rabbitBin  string // the RabbitMQ scripts (rabbitmq-server)
	rabbitUser *user.User
	rabbitHome string // HOME of the nodes: where the Erlang cookie is
	postgres   string // a superuser's URL
	redisAddr  string
	rate       float64
	phase      time.Duration
	rpcTimeout time.Duration
	flows      int
}

func main() { os.Exit(run()) }

func run() int {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	td := &teardown{}
	res, err := scenario(ctx, cfg, td)
	if err != nil {
		explain(os.Stderr, cfg, err)
	}
	if terr := td.Run(2 * time.Minute); terr != nil {
		err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
	}
	if res != nil {
		res.print(os.Stdout, time.Since(started))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "clustertest: FAIL:", err)
		return 1
	}
	fmt.Println("clustertest: PASS")
	return 0
}

func parseFlags() (*config, error) {
	cfg := &config{}
	flag.StringVar(&cfg.tag, "tag", fmt.Sprintf("oocl%d", os.Getpid()), "names the nodes, vhost and database (lower-case letters and digits)")
	flag.StringVar(&cfg.work, "work", "", "directory for the nodes and logs (required; made by the caller, removed by it)")
	flag.StringVar(&cfg.bin, "bin", "", "directory holding the gateway and worker binaries (required)")
	flag.StringVar(&cfg.rabbitBin, "rabbitmq-bin", "/usr/lib/rabbitmq/bin", "directory of the rabbitmq-server script")
	rabbitUser := flag.String("rabbitmq-user", "rabbitmq", "user the nodes run as when this program is root")
	flag.StringVar(&cfg.postgres, "postgres", cmp.Or(os.Getenv("TEST_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL superuser URL")
	flag.StringVar(&cfg.redisAddr, "redis", cmp.Or(os.Getenv("TEST_REDIS_ADDR"), "127.0.0.1:6379"), "Redis host:port")
	flag.Float64Var(&cfg.rate, "rate", 250, "calls per second over both gateways")
	flag.DurationVar(&cfg.phase, "phase", 10*time.Second, "length of each steady phase")
	flag.DurationVar(&cfg.rpcTimeout, "rpc-timeout", 4*time.Second, "RPC_TIMEOUT of the gateways")
	flag.IntVar(&cfg.flows, "flows", 48, "partner flows running at once")
	flag.Parse()
	if cfg.work == "" || cfg.bin == "" {
		return nil, errors.New("-work and -bin are required")
	}
	for _, c := range cfg.tag {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return nil, fmt.Errorf("-tag %q: lower-case letters and digits only", cfg.tag)
		}
	}
	var err error
	if cfg.work, err = filepath.Abs(cfg.work); err != nil {
		return nil, err
	}
	if cfg.bin, err = filepath.Abs(cfg.bin); err != nil {
		return nil, err
	}
	if cfg.rabbitUser, err = user.Lookup(*rabbitUser); err != nil {
		return nil, fmt.Errorf("-rabbitmq-user: %w", err)
	}
	cfg.rabbitHome = cfg.rabbitUser.HomeDir
	// The nodes run as the rabbitmq user, which must reach their directories.
	return cfg, os.Chmod(cfg.work, 0o755)
}

// scenario is the whole run; what it makes is undone by td.
func scenario(ctx context.Context, cfg *config, td *teardown) (*results, error) {
	logf("starting three RabbitMQ nodes (%s-1..3@localhost)", "oo-"+cfg.tag)
	t0 := time.Now()
	cl, err := startCluster(ctx, cfg, 3, td)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var ports []string
	for _, n := range cl.nodes {
		ports = append(ports, fmt.Sprint(n.port))
	}
	logf("cluster of 3 up in %s, AMQP ports %s, vhost %s", time.Since(t0).Round(time.Millisecond), strings.Join(ports, ", "), cl.vhost)
	st, err := startStack(ctx, cfg, cl, td)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	q, err := cl.queue(ctx, "oneoffice.commands")
	if err != nil {
		return nil, err
	}
	res := &results{cfg: cfg, members: len(q.Members)}
	if len(q.Members) != 3 {
		return res, fmt.Errorf("the command queue has %d members (%v), want 3: the broker's default (a member on every node) did not hold", len(q.Members), q.Members)
	}
	logf("command queue: %d members, leader %s", len(q.Members), q.Leader)
	return res, drive(ctx, cfg, cl, st, res)
}

// drive runs the load and the losses, then the checks.
func drive(ctx context.Context, cfg *config, cl *cluster, st *stack, res *results) error {
	ld := partnerload.New(st.loadConfig(cfg))
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	ld.Run(loadCtx)
	watch := newReadyWatch(st)
	go watch.run(loadCtx)

	sleep(ctx, cfg.phase)
	first, err := lose(ctx, cl, ld, res, "node", nil)
	if err != nil {
		return err
	}
	sleep(ctx, cfg.phase/2)
	if err := restore(ctx, ld, first, "node"); err != nil {
		return err
	}
	sleep(ctx, cfg.phase/2)
	second, err := lose(ctx, cl, ld, res, "app", first)
	if err != nil {
		return err
	}
	sleep(ctx, cfg.phase/2)
	if err := restore(ctx, ld, second, "app"); err != nil {
		return err
	}
	ld.Mark("after")
	sleep(ctx, cfg.phase/2)
	stopLoad()
	ld.Wait()
	res.notReady = watch.summary()
	logf("load stopped: %d calls; draining the queue", len(ld.Calls()))
	if err := partnerload.Drain(ctx, drainLimit, func(ctx context.Context) (int, error) {
		q, err := cl.queue(ctx, "oneoffice.commands")
		return q.Messages + q.Unacked, err
	}); err != nil {
		return err
	}
	return judge(ctx, cfg, st, ld, res)
}

// lose takes down the node leading the command queue, or, if that is avoid,
// another one: the whole node for kind "node", its app for kind "app". It
// waits until both gateways serve again.
func lose(ctx context.Context, cl *cluster, ld *partnerload.Load, res *results, kind string, avoid *node) (*node, error) {
	q, err := cl.queue(ctx, "oneoffice.commands")
	if err != nil {
		return nil, err
	}
	victim := cl.byName(q.Leader)
	if victim == nil {
		return nil, fmt.Errorf("leader %q is not a node of the cluster", q.Leader)
	}
	wasLeader := true
	if victim == avoid {
		wasLeader = false
		for _, n := range cl.nodes {
			if n != avoid {
				victim = n
				break
			}
		}
	}
	clients, err := cl.clientsOn(ctx)
	if err != nil {
		return nil, err
	}
	l := &loss{kind: kind, node: victim.name, leader: wasLeader, clients: clients[victim.name]}
	logf("loss %d: stopping the %s of %s (leader: %v; %d of the stack's connections on it)",
		len(res.losses)+1, kind, victim.name, wasLeader, l.clients)
	l.at = ld.Mark(fmt.Sprintf("loss%d", len(res.losses)+1))
	if kind == "node" {
		err = victim.stop(ctx)
	} else {
		err = victim.stopApp(ctx)
	}
	if err != nil {
		return nil, err
	}
	l.down = time.Since(l.at)
	res.losses = append(res.losses, l)
	// Serving again: both gateways answered calls they got after the stop,
	// several in a row, without a 503 or a 202; or the limit has passed.
	deadline := time.Now().Add(maxRecovery + 5*time.Second)
	for time.Now().Before(deadline) && !ld.ServingSince(l.at.Add(l.down), 20) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	if q, err := cl.queue(ctx, "oneoffice.commands", victim); err == nil {
		l.newLeader = q.Leader
	}
	return victim, ctx.Err()
}

// restore brings back what lose took down.
func restore(ctx context.Context, ld *partnerload.Load, n *node, kind string) error {
	ld.Mark("back-" + kind)
	start := time.Now()
	var err error
	if kind == "node" {
		err = n.start(ctx)
	} else {
		err = n.startApp(ctx)
	}
	if err != nil {
		return fmt.Errorf("bring back %s: %w", n.name, err)
	}
	logf("%s of %s back in %s", kind, n.name, time.Since(start).Round(time.Millisecond))
	return nil
}

// explain prints what the gateways logged about the calls a failure names
// (by request id), before teardown removes the logs.
func explain(w io.Writer, cfg *config, err error) {
	ids := regexp.MustCompile(`rq-`+cfg.tag+`-[0-9]+`).FindAllString(err.Error(), 20)
	if len(ids) == 0 {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(cfg.work, "gateway*.log"))
	for _, path := range logs {
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, id := range ids {
				if strings.Contains(line, `"`+id+`"`) && strings.Contains(line, "WARN") {
					fmt.Fprintf(w, "clustertest: %s: %s\n", filepath.Base(path), line)
				}
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "clustertest: %s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
