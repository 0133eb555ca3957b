package testenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults of ProcConfig.
const (
	DefaultReadyTimeout = 60 * time.Second
	DefaultStopTimeout  = 20 * time.Second
)

// ProcConfig is a gateway or worker process to run.
type ProcConfig struct {
	// Path is the binary (see Binaries).
	Path string
	// Name names the process in messages; default: the base name of Path.
	Name string
	// Args are the process's arguments.
	Args []string
	// Env is added to this program's environment, KEY=VALUE; of two entries
	// for one key the later wins.
	Env []string
	// MetricsAddr is given as METRICS_ADDR, where /readyz is polled; ""
	// picks a free loopback port.
	MetricsAddr string
	// LogFile, when set, is created and receives the process's stdout and
	// stderr directly; by default they are kept in memory.
	LogFile string
	// SysProcAttr is handed to the process as is: its own process group, a
	// parent-death signal.
	SysProcAttr *syscall.SysProcAttr
	// ReadyTimeout bounds the wait for /readyz; default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before it kills;
	// default DefaultStopTimeout.
	StopTimeout time.Duration
	// Host, when set, runs the process inside that test host's network
	// namespace (ip netns exec, which execs the binary: the pid is the
	// binary's). MetricsAddr must then be set, on Host.Front.
	Host *TestHost
}

// Proc is a running process.
type Proc struct {
	Name    string
	Metrics string // its METRICS_ADDR

	cfg     ProcConfig
	cmd     *exec.Cmd
	out     output
	done    chan struct{} // closed when the process has exited; exit is set then
	exit    error
	stopped atomic.Bool
}

// LaunchProc starts a process and returns at once; see WaitReady.
func LaunchProc(cfg ProcConfig) (*Proc, error) {
	cfg.Name = cmp.Or(cfg.Name, filepath.Base(cfg.Path))
	cfg.ReadyTimeout = cmp.Or(cfg.ReadyTimeout, DefaultReadyTimeout)
	cfg.StopTimeout = cmp.Or(cfg.StopTimeout, DefaultStopTimeout)
	if cfg.MetricsAddr == "" {
		addr, err := PickAddr()
		if err != nil {
			return nil, err
		}
		cfg.MetricsAddr = addr
	}
	p := &Proc{Name: cfg.Name, Metrics: cfg.MetricsAddr, cfg: cfg, done: make(chan struct{})}
	argv := append([]string{cfg.Path}, cfg.Args...)
	if cfg.Host != nil {
		argv = cfg.Host.Exec(argv...)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(append(os.Environ(), cfg.Env...), "METRICS_ADDR="+cfg.MetricsAddr)
	p.cmd.SysProcAttr = cfg.SysProcAttr
	out, err := newOutput(cfg.LogFile)
	if err != nil {
		return nil, err
	}
	p.out = out
	p.cmd.Stdout, p.cmd.Stderr = out.writer(), out.writer()
	if err := p.cmd.Start(); err != nil {
		out.close()
		return nil, fmt.Errorf("start %s: %w", cfg.Name, err)
	}
	go func() {
		p.exit = p.cmd.Wait()
		out.close()
		close(p.done)
	}()
	return p, nil
}

// StartProc starts a process and waits until its /readyz answers 200. A
// process that does not get ready is stopped again.
func StartProc(ctx context.Context, cfg ProcConfig) (*Proc, error) {
	p, err := LaunchProc(cfg)
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(ctx); err != nil {
		return nil, errors.Join(err, p.Stop(ctx))
	}
	return p, nil
}

// WaitReady waits until /readyz answers 200, the process exits, ctx ends or
// the ReadyTimeout has passed.
func (p *Proc) WaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	err := retryFor(ctx, p.cfg.ReadyTimeout, 50*time.Millisecond, nil, p.Name+" ready", func(ctx context.Context, _ int) error {
		switch {
		case ready(ctx, client, "http://"+p.Metrics+"/readyz"):
			return nil
		case closed(p.done):
			return backoff.Permanent(fmt.Errorf("exited at start (%v)", p.exit))
		}
		return errors.New("/readyz does not answer 200")
	})
	if err != nil {
		return fmt.Errorf("%w:\n%s", err, p.out.tail())
	}
	return nil
}

func ready(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop sends SIGTERM and waits for the process to drain and exit, up to the
// StopTimeout or the end of ctx, then kills it. It reports an exit that is
// not clean. Only the first call does anything; a process that had already
// exited is not reported.
func (p *Proc) Stop(ctx context.Context) error {
	if p.stopped.Swap(true) {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	timer := time.NewTimer(p.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		if p.exit != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM:\n%s", p.Name, p.exit, p.out.tail())
		}
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not stop within %s of SIGTERM; killed:\n%s", p.Name, p.cfg.StopTimeout, p.out.tail())
}

// Ready reports that the process's /readyz answers 200 now.
func (p *Proc) Ready(ctx context.Context) bool {
	return ready(ctx, &http.Client{Timeout: 2 * time.Second}, "http://"+p.Metrics+"/readyz")
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Cmd is the started command, to read its Path and Args; do not Wait on it.
func (p *Proc) Cmd() *exec.Cmd { return p.cmd }

// Log is what the process wrote so far: all of it when kept in memory, the
// end of the LogFile otherwise.
func (p *Proc) Log() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports that the process has exited.
func (p *Proc) Exited() bool { return closed(p.done) }

// Launch starts a process for a test and returns at once; it is stopped at
// cleanup, where an exit that is not clean fails the test.
func Launch(t testing.TB, cfg ProcConfig) *Proc {
	t.Helper()
	p, err := LaunchProc(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return p
}

// Start is Launch, then WaitReady.
func Start(t testing.TB, cfg ProcConfig) *Proc {
	t.Helper()
	p := Launch(t, cfg)
	if err := p.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}
