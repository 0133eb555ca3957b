// Package cluster is `lab cluster` (make cluster-test): the provisioner on a
// three-node RabbitMQ cluster on this host, losing nodes under load.
//
// It boots three nodes of the machine's RabbitMQ (testenv.StartRabbitCluster:
// each with its own node name, ports and directories; the main broker on 5672
// is left alone), and starts two gateways and three workers whose AMQP_URL
// lists all three nodes, on their own database and Redis DB
// (testenv.UpStack). Partner-like flows through both gateways (every method) run at
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
package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// size is the number of nodes; one is down at a time.
const size = 3

var logf = partnerload.Logger("cluster")

// run is one run: the nodes, the stack on them, the load and its losses.
type run struct {
	cfg   partnerload.Flags
	td    testenv.Teardown
	nodes []*testenv.RabbitNode
	vhost string
	st    *partnerload.Stack
	ld    *partnerload.Load
	res   results
}

// Run runs the test with the command line args; it fails if a check does.
func Run(ctx context.Context, args []string) error {
	r := &run{vhost: "oneoffice"}
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	r.cfg.Register(fs, "oocl", 250, 48)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := r.cfg.Validate(); err != nil {
		return err
	}
	r.res.cfg = r.cfg
	started := time.Now()
	err := r.scenario(ctx)
	if err != nil {
		r.explain(os.Stderr, err)
	}
	if terr := r.td.Run(2 * time.Minute); terr != nil {
		err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
	}
	r.res.print(os.Stdout, time.Since(started))
	if err != nil {
		return fmt.Errorf("FAIL: %w", err)
	}
	fmt.Println("cluster: PASS")
	return nil
}

// scenario is the whole run; what it makes is undone by r.td.
func (r *run) scenario(ctx context.Context) error {
	logf("starting %d RabbitMQ nodes", size)
	t0 := time.Now()
	nodes, err := testenv.StartRabbitCluster(ctx, size)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	r.nodes = nodes
	r.td.Add("stop the RabbitMQ nodes", r.stopAll)
	if _, err := nodes[0].Vhost(ctx, r.vhost); err != nil {
		return err
	}
	var urls, ports []string
	for _, n := range nodes {
		urls, ports = append(urls, n.URL(r.vhost)), append(ports, fmt.Sprint(n.Port))
	}
	logf("cluster of %d up in %s, AMQP ports %s, vhost %s", size, time.Since(t0).Round(time.Millisecond), strings.Join(ports, ", "), r.vhost)
	srv, err := testenv.FromEnv()
	if err != nil {
		return err
	}
	srv.Logf = logf
	r.st, err = partnerload.UpStack(ctx, srv, testenv.StackConfig{Name: "cluster", Workers: 3, Gateways: 2,
		AMQPURL: strings.Join(urls, ",")}, r.cfg, 6, &r.td)
	if err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	q, err := r.queue(ctx)
	if err != nil {
		return err
	}
	r.res.members = members(q)
	if r.res.members != size {
		return fmt.Errorf("the command queue has %d members (%v), want %d: the broker's default (a member on every node) did not hold", r.res.members, q.Members, size)
	}
	logf("command queue: %d members, leader %s", r.res.members, q.Leader)
	return r.drive(ctx)
}

// drive runs the load and the losses, then the checks.
func (r *run) drive(ctx context.Context) error {
	r.ld = partnerload.New(r.st.Load)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	r.ld.Run(loadCtx)
	watch := newReadyWatch(append(append([]*testenv.Proc{}, r.st.Gateways...), r.st.Workers...))
	go watch.run(loadCtx)

	phase := r.cfg.Phase
	partnerload.Sleep(ctx, phase)
	first, err := r.lose(ctx, "node", nil)
	if err != nil {
		return err
	}
	partnerload.Sleep(ctx, phase/2)
	if err := r.restore(ctx, first, "node"); err != nil {
		return err
	}
	partnerload.Sleep(ctx, phase/2)
	second, err := r.lose(ctx, "app", first)
	if err != nil {
		return err
	}
	partnerload.Sleep(ctx, phase/2)
	if err := r.restore(ctx, second, "app"); err != nil {
		return err
	}
	r.ld.Mark("after")
	partnerload.Sleep(ctx, phase/2)
	stopLoad()
	r.ld.Wait()
	r.res.notReady = watch.summary()
	logf("load stopped: %d calls; draining the queue", len(r.ld.Calls()))
	if err := partnerload.Drain(ctx, partnerload.DrainLimit, func(ctx context.Context) (int, error) {
		q, err := r.queue(ctx)
		return q.Messages + q.Unacked, err
	}); err != nil {
		return err
	}
	return r.res.judge(ctx, r.st, r.ld)
}

// lose takes down the node leading the command queue, or, if that is avoid,
// another one: the whole node for kind "node", its app for kind "app". It
// waits until both gateways serve again.
func (r *run) lose(ctx context.Context, kind string, avoid *testenv.RabbitNode) (*testenv.RabbitNode, error) {
	q, err := r.queue(ctx)
	if err != nil {
		return nil, err
	}
	victim := r.byName(q.Leader)
	if victim == nil {
		return nil, fmt.Errorf("leader %q is not a node of the cluster", q.Leader)
	}
	wasLeader := victim != avoid
	if !wasLeader {
		victim = r.nodes[0]
		if victim == avoid {
			victim = r.nodes[1]
		}
	}
	up, err := r.anyUp(ctx)
	if err != nil {
		return nil, err
	}
	clients, err := up.Connections(ctx, r.vhost)
	if err != nil {
		return nil, err
	}
	l := &loss{kind: kind, node: victim.Name, leader: wasLeader, clients: clients[victim.Port]}
	logf("loss %d: stopping the %s of %s (leader: %v; %d of the stack's connections on it)",
		len(r.res.losses)+1, kind, victim.Name, wasLeader, l.clients)
	l.at = r.ld.Mark(fmt.Sprintf("loss%d", len(r.res.losses)+1))
	if kind == "node" {
		err = victim.Down(ctx)
	} else {
		err = victim.Ctl(ctx, "stop_app")
	}
	if err != nil {
		return nil, err
	}
	l.down = time.Since(l.at)
	r.res.losses = append(r.res.losses, l)
	// Serving again: both gateways answered calls they got after the stop,
	// several in a row, without a 503 or a 202; or the limit has passed.
	r.ld.AwaitServing(ctx, l.at.Add(l.down))
	if q, err := r.queue(ctx, victim); err == nil {
		l.newLeader = q.Leader
	}
	return victim, ctx.Err()
}

// restore brings back what lose took down.
func (r *run) restore(ctx context.Context, n *testenv.RabbitNode, kind string) error {
	r.ld.Mark("back-" + kind)
	start := time.Now()
	var err error
	if kind == "node" {
		err = n.Up(ctx)
	} else {
		err = n.Ctl(ctx, "start_app")
	}
	if err != nil {
		return fmt.Errorf("bring back %s: %w", n.Name, err)
	}
	logf("%s of %s back in %s", kind, n.Name, time.Since(start).Round(time.Millisecond))
	return nil
}

// queue lists the command queue, asked of a running node other than skip.
func (r *run) queue(ctx context.Context, skip ...*testenv.RabbitNode) (testenv.QueueInfo, error) {
	n, err := r.anyUp(ctx, skip...)
	if err != nil {
		return testenv.QueueInfo{}, err
	}
	return n.Queue(ctx, r.vhost, amqpx.Queue)
}

// anyUp returns a node that answers the CLI, other than skip.
func (r *run) anyUp(ctx context.Context, skip ...*testenv.RabbitNode) (*testenv.RabbitNode, error) {
	for _, n := range r.nodes {
		if !slices.Contains(skip, n) && n.Ctl(ctx, "-q", "ping") == nil {
			return n, nil
		}
	}
	return nil, errors.New("no RabbitMQ node answers")
}

func (r *run) byName(name string) *testenv.RabbitNode {
	for _, n := range r.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// members counts the nodes of a quorum queue.
func members(q testenv.QueueInfo) int {
	m, _ := q.Members.([]any)
	return len(m)
}

// stopAll halts every node still running, side by side, and removes them.
func (r *run) stopAll(ctx context.Context) error {
	errs := make([]error, len(r.nodes))
	var wg sync.WaitGroup
	for i, n := range r.nodes {
		wg.Go(func() { errs[i] = n.Stop(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// explain prints what the gateways logged about the calls a failure names
// (by request id), before teardown removes the logs.
func (r *run) explain(w io.Writer, err error) {
	ids := regexp.MustCompile(`rq-`+r.cfg.Tag+`-[0-9]+`).FindAllString(err.Error(), 20)
	if len(ids) == 0 || r.st == nil {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(r.st.Dir, "gateway*.log"))
	for _, path := range logs {
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, id := range ids {
				if strings.Contains(line, `"`+id+`"`) && strings.Contains(line, "WARN") {
					fmt.Fprintf(w, "cluster: %s: %s\n", filepath.Base(path), line)
				}
			}
		}
	}
}
