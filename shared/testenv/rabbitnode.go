package testenv

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Settings of a private RabbitMQ node, from the environment with the
// defaults of a Debian or Ubuntu package install.
const (
	// RabbitBinEnv names the directory holding rabbitmq-server.
	RabbitBinEnv     = "TEST_RABBITMQ_BIN"
	defaultRabbitBin = "/usr/lib/rabbitmq/bin"
	// RabbitUserEnv names the user a node runs as when the test runs as
	// root; its home holds the Erlang cookie the CLI shares.
	RabbitUserEnv     = "TEST_RABBITMQ_USER"
	defaultRabbitUser = "rabbitmq"
	// nodeBootLimit bounds a node's start-up.
	nodeBootLimit = 2 * time.Minute
)

// RabbitNode is a RabbitMQ node of one test, beside the shared broker: its
// own node name, AMQP and distribution ports and directories, sharing only
// the Erlang cookie and epmd with the machine's broker. A test may do to it
// what it must never do to the shared one: raise a resource alarm, stop it.
type RabbitNode struct {
	Name string // rabbitmqctl -n Name
	Port int    // AMQP, on 127.0.0.1

	dir  string
	user *user.User
	dist int // the Erlang distribution port
	cmd  *exec.Cmd
	done chan struct{} // closed when the node's process has exited
}

// StartRabbitNode boots a node in a new directory under os.TempDir and waits
// until it serves. Each of conf is a line added to its rabbitmq.conf
// ("heartbeat = 3", say). On error nothing is left running or on disk.
func StartRabbitNode(ctx context.Context, conf ...string) (*RabbitNode, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	u, err := user.Lookup(cmp.Or(os.Getenv(RabbitUserEnv), defaultRabbitUser))
	if err != nil {
		return nil, fmt.Errorf("RabbitMQ user (%s): %w", RabbitUserEnv, err)
	}
	dir, err := os.MkdirTemp("", "oo-rabbit")
	if err != nil {
		return nil, err
	}
	n := &RabbitNode{Name: strings.ReplaceAll(Name("oo-test"), "_", "-") + "@localhost", Port: ports[0], dir: dir,
		user: u, dist: ports[1]}
	if err := n.prepare(conf); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := n.start(ctx); err != nil {
		return nil, errors.Join(err, n.Stop(context.WithoutCancel(ctx)))
	}
	return n, nil
}

// prepare writes the node's configuration: a listener on loopback, no
// plugins, and an empty rabbitmq-env.conf so that the machine's is not read.
func (n *RabbitNode) prepare(conf []string) error {
	if err := os.Chmod(n.dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"rabbitmq.conf": fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nloopback_users = none\n"+
			"disk_free_limit.absolute = 50MB\n", n.Port) + strings.Join(append(conf, ""), "\n"),
		"enabled_plugins":   "[].\n",
		"rabbitmq-env.conf": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(n.dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	if os.Geteuid() != 0 {
		return nil
	}
	uid, _ := strconv.Atoi(n.user.Uid)
	gid, _ := strconv.Atoi(n.user.Gid)
	return filepath.Walk(n.dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

func (n *RabbitNode) start(ctx context.Context) error {
	u, dist := n.user, n.dist
	server := filepath.Join(cmp.Or(os.Getenv(RabbitBinEnv), defaultRabbitBin), "rabbitmq-server")
	if os.Geteuid() == 0 {
		n.cmd = exec.Command("runuser", "-u", u.Username, "--", server)
	} else {
		n.cmd = exec.Command(server)
	}
	n.cmd.Env = append(os.Environ(),
		"HOME="+u.HomeDir,
		"RABBITMQ_NODENAME="+n.Name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.Port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(n.dir, "pid"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "enabled_plugins"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(n.dir, "rabbitmq-env.conf"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
	)
	n.cmd.Dir = n.dir
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(n.dir, "stdout.log"))
	if err != nil {
		return err
	}
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start RabbitMQ node %s: %w", n.Name, err)
	}
	n.done = make(chan struct{})
	go func() {
		n.cmd.Wait()
		out.Close()
		close(n.done)
	}()
	return n.awaitBoot(ctx)
}

func (n *RabbitNode) awaitBoot(ctx context.Context) error {
	return retryFor(ctx, nodeBootLimit, time.Second, nil, "RabbitMQ node "+n.Name, func(ctx context.Context, _ int) error {
		err := n.Ctl(ctx, "await_startup", "--timeout", "30")
		if err != nil && n.exited() {
			log, _ := os.ReadFile(filepath.Join(n.dir, "stdout.log"))
			return backoff.Permanent(fmt.Errorf("exited while booting: %w\n%s", err, log))
		}
		return err
	})
}

// Ctl runs rabbitmqctl against the node.
func (n *RabbitNode) Ctl(ctx context.Context, args ...string) error {
	_, err := n.CtlOutput(ctx, args...)
	return err
}

// CtlJSON runs rabbitmqctl against the node with --formatter json and
// decodes its output into v.
func (n *RabbitNode) CtlJSON(ctx context.Context, v any, args ...string) error {
	out, err := n.CtlOutput(ctx, append(args, "--formatter", "json", "--quiet")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// CtlOutput runs rabbitmqctl against the node and returns its stdout.
func (n *RabbitNode) CtlOutput(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, rabbitmqctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-n", n.Name}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("rabbitmqctl -n %s %s: %w: %s", n.Name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)+stderr.String()))
	}
	return out, nil
}

// Vhost creates vhost name on the node for guest and returns its AMQP URL.
func (n *RabbitNode) Vhost(ctx context.Context, name string) (string, error) {
	if err := n.Ctl(ctx, "add_vhost", name); err != nil {
		return "", err
	}
	if err := n.Ctl(ctx, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"); err != nil {
		return "", err
	}
	return n.URL(name), nil
}

// URL is the node's AMQP URL for vhost.
func (n *RabbitNode) URL(vhost string) string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/%s", n.Port, vhost)
}

// Restart stops the node (every connection to it is lost) and boots it
// again on the same ports and directories, with the queues and messages it
// had written to disk.
func (n *RabbitNode) Restart(ctx context.Context) error {
	if err := n.Down(ctx); err != nil {
		return err
	}
	return n.Up(ctx)
}

// Down halts the whole node, keeping its directory, and kills its processes
// if it does not stop within 30 seconds; Up boots it again.
func (n *RabbitNode) Down(ctx context.Context) error {
	if n.exited() {
		return nil
	}
	err := n.Ctl(ctx, "stop")
	select {
	case <-n.done:
		return nil
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	n.kill()
	return fmt.Errorf("RabbitMQ node %s did not stop (%v); killed", n.Name, err)
}

// Up boots the node again after Down.
func (n *RabbitNode) Up(ctx context.Context) error { return n.start(ctx) }

// Stop halts the node as Down does and removes its directory. It is safe
// to call twice.
func (n *RabbitNode) Stop(ctx context.Context) error {
	return errors.Join(n.Down(ctx), os.RemoveAll(n.dir))
}

// Join makes the node a member of the cluster of first.
func (n *RabbitNode) Join(ctx context.Context, first *RabbitNode) error {
	for _, args := range [][]string{{"stop_app"}, {"join_cluster", first.Name}, {"start_app"}} {
		if err := n.Ctl(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// StartRabbitCluster boots size nodes side by side (StartRabbitNode with
// conf), joins the others to the first and checks that all of them run. On
// error nothing is left running or on disk.
func StartRabbitCluster(ctx context.Context, size int, conf ...string) ([]*RabbitNode, error) {
	nodes := make([]*RabbitNode, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { nodes[i], errs[i] = StartRabbitNode(ctx, conf...) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	for _, n := range nodes[1:] {
		if err == nil {
			err = n.Join(ctx, nodes[0])
		}
	}
	var st struct {
		Running []string `json:"running_nodes"`
	}
	if err == nil {
		err = nodes[0].CtlJSON(ctx, &st, "cluster_status")
	}
	if err == nil && len(st.Running) != size {
		err = fmt.Errorf("the cluster runs %d nodes (%v), want %d", len(st.Running), st.Running, size)
	}
	if err != nil {
		for _, n := range nodes {
			if n != nil {
				err = errors.Join(err, n.Stop(context.WithoutCancel(ctx)))
			}
		}
		return nil, err
	}
	return nodes, nil
}

// kill ends the node's process group and the Erlang VM named in its pid
// file, which runuser may have left outside the group.
func (n *RabbitNode) kill() {
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	if b, err := os.ReadFile(filepath.Join(n.dir, "pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
	}
}

func (n *RabbitNode) exited() bool { return closed(n.done) }

// closed reports that done, the channel closed when a process exits, is
// closed, or that there is none: nothing was started.
func closed(done <-chan struct{}) bool {
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// PrivateRabbit starts a RabbitMQ node for the test, stopped and removed at
// cleanup; the test fails if it does not boot.
func PrivateRabbit(t testing.TB) *RabbitNode {
	t.Helper()
	return private(t, "RabbitMQ node", nodeBootLimit+30*time.Second,
		func(ctx context.Context) (*RabbitNode, error) { return StartRabbitNode(ctx) })
}

// private starts a server of the test's own within boot, and stops and
// removes it at cleanup within a minute; the test fails if either fails.
func private[S interface{ Stop(context.Context) error }](t testing.TB, what string, boot time.Duration,
	start func(context.Context) (S, error)) S {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), boot)
	defer cancel()
	s, err := start(ctx)
	if err != nil {
		t.Fatalf("start a private %s: %v", what, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop the private %s: %v", what, err)
		}
	})
	return s
}

// freePorts returns n loopback ports free right now, all different.
func freePorts(n int) ([]int, error) {
	var ports []int
	for len(ports) < n {
		addr, err := PickAddr()
		if err != nil {
			return nil, err
		}
		_, p, _ := strings.Cut(addr, ":")
		port, _ := strconv.Atoi(p)
		if !slices.Contains(ports, port) {
			ports = append(ports, port)
		}
	}
	return ports, nil
}

// QueueInfo is a row of rabbitmqctl list_queues.
type QueueInfo struct {
	Name     string `json:"name"`
	Leader   string `json:"leader"`
	Members  any    `json:"members"` // the nodes of a quorum queue, []any of strings; "" for a classic one
	Messages int    `json:"messages"`
	Unacked  int    `json:"messages_unacknowledged"`
}

// Queue lists the queue called name of vhost.
func (n *RabbitNode) Queue(ctx context.Context, vhost, name string) (QueueInfo, error) {
	var rows []QueueInfo
	if err := n.CtlJSON(ctx, &rows, "list_queues", "-p", vhost,
		"name", "leader", "members", "messages", "messages_unacknowledged"); err != nil {
		return QueueInfo{}, err
	}
	for _, q := range rows {
		if q.Name == name {
			return q, nil
		}
	}
	return QueueInfo{}, fmt.Errorf("no queue %s in vhost %s", name, vhost)
}

// Connections counts the client connections to vhost by the AMQP port they
// are connected to (a node of the cluster).
func (n *RabbitNode) Connections(ctx context.Context, vhost string) (map[int]int, error) {
	var rows []struct {
		Port  int    `json:"port"`
		Vhost string `json:"vhost"`
	}
	if err := n.CtlJSON(ctx, &rows, "list_connections", "port", "vhost"); err != nil {
		return nil, err
	}
	on := map[int]int{}
	for _, r := range rows {
		if r.Vhost == vhost {
			on[r.Port]++
		}
	}
	return on, nil
}
