package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ctlTimeout bounds one run of the RabbitMQ CLI.
const ctlTimeout = 90 * time.Second

// node is one RabbitMQ node of the test cluster: its own name, ports and
// directories, so that it shares nothing with the machine's main broker but
// the Erlang cookie and epmd.
type node struct {
	name string // oo-<tag>-<i>@localhost
	port int    // AMQP
	dist int    // Erlang distribution
	dir  string
	cfg  *config

	cmd  *exec.Cmd
	done chan struct{} // closed when the started process has exited
}

func newNode(cfg *config, i int) (*node, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	n := &node{name: fmt.Sprintf("oo-%s-%d@localhost", cfg.tag, i), port: ports[0], dist: ports[1],
		dir: filepath.Join(cfg.work, fmt.Sprintf("node%d", i)), cfg: cfg}
	return n, n.prepare()
}

// prepare writes the node's configuration: a listener on loopback, no
// plugins (the main broker's Prometheus and management ports stay its own),
// and an empty rabbitmq-env.conf so that the machine's one is not read.
func (n *node) prepare() error {
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"rabbitmq.conf": fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\n"+
			"loopback_users = none\n"+
			"disk_free_limit.absolute = 50MB\n", n.port),
		"enabled_plugins":   "[].\n",
		"rabbitmq-env.conf": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(n.dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return chownTree(n.dir, n.cfg.rabbitUser)
}

// url is the node's AMQP URL for vhost.
func (n *node) url(vhost string) string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/%s", n.port, vhost)
}

func (n *node) env() []string {
	return append(os.Environ(),
		"HOME="+n.cfg.rabbitHome,
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(n.dir, "pid"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "enabled_plugins"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(n.dir, "rabbitmq-env.conf"),
		// Distribution on loopback only, like the main broker's.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
	)
}

// start runs the node in the background (as the rabbitmq user when this
// program is root) and waits until it has booted.
func (n *node) start(ctx context.Context) error {
	server := filepath.Join(n.cfg.rabbitBin, "rabbitmq-server")
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", "-u", n.cfg.rabbitUser.Username, "--", server)
	} else {
		cmd = exec.Command(server)
	}
	cmd.Env = n.env()
	cmd.Dir = n.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.OpenFile(filepath.Join(n.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		out.Close()
		close(done)
	}(n.done)
	return n.awaitStartup(ctx)
}

func (n *node) awaitStartup(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := ctl(ctx, "rabbitmqctl", "-n", n.name, "await_startup", "--timeout", "30")
		if err == nil {
			return nil
		}
		if n.exited() {
			return fmt.Errorf("%s exited while booting: %v (see %s)", n.name, err, filepath.Join(n.dir, "log"))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not boot: %w", n.name, err)
		}
		time.Sleep(time.Second)
	}
}

func (n *node) exited() bool {
	if n.done == nil {
		return true
	}
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// join makes the node a member of the cluster of first.
func (n *node) join(ctx context.Context, first *node) error {
	for _, args := range [][]string{{"stop_app"}, {"join_cluster", first.name}, {"start_app"}} {
		if err := ctl(ctx, "rabbitmqctl", append([]string{"-n", n.name}, args...)...); err != nil {
			return err
		}
	}
	return nil
}

// stop halts the whole node and waits for its process to exit.
func (n *node) stop(ctx context.Context) error {
	if n.exited() {
		return nil
	}
	err := ctl(ctx, "rabbitmqctl", "-n", n.name, "stop")
	select {
	case <-n.done:
		return nil
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	n.kill()
	return fmt.Errorf("%s did not stop (%v); killed", n.name, err)
}

// kill ends the node's process group at once: the last resort of teardown.
func (n *node) kill() {
	if n.exited() {
		return
	}
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

func (n *node) stopApp(ctx context.Context) error {
	return ctl(ctx, "rabbitmqctl", "-n", n.name, "stop_app")
}

func (n *node) startApp(ctx context.Context) error {
	return ctl(ctx, "rabbitmqctl", "-n", n.name, "start_app")
}

// ctl runs a RabbitMQ CLI tool and returns its output in the error.
func ctl(ctx context.Context, tool string, args ...string) error {
	_, err := ctlOutput(ctx, tool, args...)
	return err
}

func ctlOutput(ctx context.Context, tool string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)+" "+string(out)))
		}
		return nil, err
	}
	return out, nil
}

// ctlJSON runs a listing with --formatter json and decodes it into v.
func ctlJSON(ctx context.Context, v any, tool string, args ...string) error {
	out, err := ctlOutput(ctx, tool, append(args, "-q", "--formatter", "json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, out)
	}
	return nil
}

// cluster is the three nodes.
type cluster struct {
	nodes []*node
	vhost string
}

// startCluster boots the nodes side by side, then joins the second and third
// to the first, and creates the vhost of the stack.
func startCluster(ctx context.Context, cfg *config, size int, td *teardown) (*cluster, error) {
	c := &cluster{vhost: cfg.tag}
	for i := 1; i <= size; i++ {
		n, err := newNode(cfg, i)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	td.Add("stop the RabbitMQ nodes", c.stopAll)
	errs := make(chan error, size)
	for _, n := range c.nodes {
		go func() { errs <- n.start(ctx) }()
	}
	var failed []error
	for range c.nodes {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	if err := errors.Join(failed...); err != nil {
		return nil, err
	}
	for _, n := range c.nodes[1:] {
		if err := n.join(ctx, c.nodes[0]); err != nil {
			return nil, err
		}
	}
	first := c.nodes[0].name
	if err := ctl(ctx, "rabbitmqctl", "-n", first, "add_vhost", c.vhost); err != nil {
		return nil, err
	}
	if err := ctl(ctx, "rabbitmqctl", "-n", first, "set_permissions", "-p", c.vhost, "guest", ".*", ".*", ".*"); err != nil {
		return nil, err
	}
	return c, c.checkMembers(ctx, size)
}

// checkMembers asks the cluster how many nodes run.
func (c *cluster) checkMembers(ctx context.Context, want int) error {
	var st struct {
		Running []string `json:"running_nodes"`
	}
	if err := ctlJSON(ctx, &st, "rabbitmqctl", "-n", c.nodes[0].name, "cluster_status"); err != nil {
		return err
	}
	if len(st.Running) != want {
		return fmt.Errorf("cluster runs %d nodes (%v), want %d", len(st.Running), st.Running, want)
	}
	return nil
}

// urls is AMQP_URL for the stack: every node, comma-separated.
func (c *cluster) urls() string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, n.url(c.vhost))
	}
	return strings.Join(us, ",")
}

// byName returns the node called name.
func (c *cluster) byName(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// anyUp returns a node that answers the CLI, other than skip.
func (c *cluster) anyUp(ctx context.Context, skip ...*node) (*node, error) {
	for _, n := range c.nodes {
		if n.exited() || containsNode(skip, n) {
			continue
		}
		if ctl(ctx, "rabbitmqctl", "-n", n.name, "-q", "ping") == nil {
			return n, nil
		}
	}
	return nil, errors.New("no RabbitMQ node answers")
}

func containsNode(ns []*node, n *node) bool {
	for _, m := range ns {
		if m == n {
			return true
		}
	}
	return false
}

// queueInfo is one row of list_queues.
type queueInfo struct {
	Name     string   `json:"name"`
	Leader   string   `json:"leader"`
	Members  []string `json:"members"`
	Messages int      `json:"messages"`
	Unacked  int      `json:"messages_unacknowledged"`
}

// queue lists the named queue of the stack's vhost, asked of a running node
// other than skip.
func (c *cluster) queue(ctx context.Context, name string, skip ...*node) (queueInfo, error) {
	n, err := c.anyUp(ctx, skip...)
	if err != nil {
		return queueInfo{}, err
	}
	var rows []queueInfo
	if err := ctlJSON(ctx, &rows, "rabbitmqctl", "-n", n.name, "list_queues", "-p", c.vhost,
		"name", "leader", "members", "messages", "messages_unacknowledged"); err != nil {
		return queueInfo{}, err
	}
	for _, r := range rows {
		if r.Name == name {
			return r, nil
		}
	}
	return queueInfo{}, fmt.Errorf("no queue %s in vhost %s", name, c.vhost)
}

// clientsOn counts the stack's connections held by each node, by its port.
func (c *cluster) clientsOn(ctx context.Context) (map[string]int, error) {
	n, err := c.anyUp(ctx)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		Port  int    `json:"port"`
		Vhost string `json:"vhost"`
	}
	if err := ctlJSON(ctx, &rows, "rabbitmqctl", "-n", n.name, "list_connections", "port", "vhost"); err != nil {
		return nil, err
	}
	on := map[string]int{}
	for _, r := range rows {
		for _, n := range c.nodes {
			if r.Vhost == c.vhost && r.Port == n.port {
				on[n.name]++
			}
		}
	}
	return on, nil
}

// stopAll halts every node still running, side by side, and removes their
// directories.
func (c *cluster) stopAll(ctx context.Context) error {
	errs := make(chan error, len(c.nodes))
	for _, n := range c.nodes {
		go func() { errs <- n.stop(ctx) }()
	}
	var failed []error
	for range c.nodes {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	return errors.Join(failed...)
}

// chownTree gives dir and everything under it to u.
func chownTree(dir string, u *user.User) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
