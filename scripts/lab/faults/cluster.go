package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// Cluster is `lab cluster` (make cluster-test): the provisioner on a
// three-node RabbitMQ cluster on this host (testenv.StartRabbitCluster: each
// node with its own name, ports and directories; the main broker on 5672 is
// left alone), two gateways and three workers whose AMQP_URL lists all three
// nodes. The faults:
//
//   - node-loss: the node leading the command queue stopped (the whole node),
//     started back half a phase after the gateways serve again;
//   - app-loss: the app of the node then leading the queue (or of another
//     one) stopped, and started back the same way.
//
// One node is down at a time, so the quorum queue keeps its majority.
// Recovery is timed from the start of each loss: the stack must serve while
// a node is down.
var Cluster = &suite{name: "cluster", rate: 250, flows: 48, setup: clusterNodes, report: reportCluster,
	faults: []fault{
		{name: "node-loss", prepare: victim, inject: lose("node"), after: restore("node"), fromStart: true},
		{name: "app-loss", prepare: victim, inject: lose("app"), after: restore("app"), fromStart: true},
	}}

// size is the number of nodes; one is down at a time.
const size = 3

// clusterNodes starts the nodes and the stack on them, and checks that the
// command queue has a member on each.
func clusterNodes(ctx context.Context, r *run) error {
	r.logf("starting %d RabbitMQ nodes", size)
	t0 := time.Now()
	nodes, err := testenv.StartRabbitCluster(ctx, size)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	r.nodes = nodes
	r.td.Add("stop the RabbitMQ nodes", func(ctx context.Context) error {
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Go(func() { errs[i] = n.Stop(ctx) })
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	if _, err := nodes[0].Vhost(ctx, r.vhost); err != nil {
		return err
	}
	var urls, ports []string
	for _, n := range nodes {
		urls, ports = append(urls, n.URL(r.vhost)), append(ports, fmt.Sprint(n.Port))
	}
	r.logf("cluster of %d up in %s, AMQP ports %s, vhost %s", size, time.Since(t0).Round(time.Millisecond), strings.Join(ports, ", "), r.vhost)
	srv, err := testenv.FromEnv()
	if err != nil {
		return err
	}
	if err := r.upStack(ctx, srv, testenv.StackConfig{Workers: 3, Gateways: 2, AMQPURL: strings.Join(urls, ",")}, 6); err != nil {
		return err
	}
	q, err := r.queue(ctx, amqpx.Queue)
	if err != nil {
		return err
	}
	m, _ := q.Members.([]any)
	if r.members = len(m); r.members != size {
		return fmt.Errorf("the command queue has %d members (%v), want %d: the broker's default (a member on every node) did not hold", r.members, q.Members, size)
	}
	r.logf("command queue: %d members, leader %s", r.members, q.Leader)
	return nil
}

// victim picks the node to lose: the one leading the command queue, or
// another one if that one was lost last time.
func victim(ctx context.Context, r *run, fr *faultRun) error {
	q, err := r.queue(ctx, amqpx.Queue)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(r.nodes, func(n *testenv.RabbitNode) bool { return n.Name == q.Leader })
	if i < 0 {
		return fmt.Errorf("leader %q is not a node of the cluster", q.Leader)
	}
	v := r.nodes[i]
	leader := v != r.lost
	if !leader {
		v = r.nodes[0]
		if v == r.lost {
			v = r.nodes[1]
		}
	}
	up, err := r.anyUp(ctx)
	if err != nil {
		return err
	}
	clients, err := up.Connections(ctx, r.vhost)
	r.lost = v
	fr.note = fmt.Sprintf("%s (queue leader: %v, %d stack connections on it", v.Name, leader, clients[v.Port])
	return err
}

// lose takes down the victim: the whole node, or for kind app its app.
func lose(kind string) func(context.Context, *run, *faultRun) error {
	return func(ctx context.Context, r *run, fr *faultRun) error {
		r.logf("stopping the %s of %s", kind, fr.note)
		start := time.Now()
		var err error
		if kind == "node" {
			err = r.lost.Down(ctx)
		} else {
			err = r.lost.Ctl(ctx, "stop_app")
		}
		fr.note = fmt.Sprintf("%s %s; stop took %s)", kind, fr.note, time.Since(start).Round(time.Millisecond))
		return err
	}
}

// restore brings back, half a phase later, what lose took down, and lets
// half a phase pass before the next loss.
func restore(kind string) func(context.Context, *run, *faultRun) error {
	return func(ctx context.Context, r *run, fr *faultRun) error {
		if q, err := r.queue(ctx, amqpx.Queue, r.lost); err == nil {
			fr.note += "; new leader " + q.Leader
		}
		partnerload.Sleep(ctx, r.cfg.Phase/2)
		t0 := time.Now()
		var err error
		if kind == "node" {
			err = r.lost.Up(ctx)
		} else {
			err = r.lost.Ctl(ctx, "start_app")
		}
		if err != nil {
			return fmt.Errorf("bring back %s: %w", r.lost.Name, err)
		}
		r.logf("%s of %s back in %s", kind, r.lost.Name, time.Since(t0).Round(time.Millisecond))
		partnerload.Sleep(ctx, r.cfg.Phase/2)
		return nil
	}
}

func reportCluster(w io.Writer, r *run) {
	fmt.Fprintf(w, "command queue members: %d\n", r.members)
}
