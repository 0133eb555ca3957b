package preauth

import (
	"context"
	"strconv"
	"syscall"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// upStack brings up one isolated deployment on the shared servers with the
// tests' harness (testenv.UpStack): its own database, vhost and claimed
// Redis DB, binaries built from this tree, one worker and one gateway, each
// logging to <name>.log in the work directory. When it fails half way, what
// it made is removed again; the caller closes it otherwise.
func upStack(ctx context.Context, cfg config) (*testenv.Stack, error) {
	srv := cfg.servers
	srv.Logf = progress
	return srv.UpStack(ctx, testenv.StackConfig{
		Name:     "preauth",
		Workers:  1,
		Env:      env(cfg),
		RedisDB:  cfg.redisDB,
		Keep:     cfg.keep,
		LogFiles: true,
		// Own process group: a Ctrl-C reaches the bench only, which stops
		// the processes in order; the parent-death signal stops them should
		// the bench be killed outright.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM},
	})
}

// env is what both processes get on top of the bench's own environment and
// the stack's addresses.
func env(cfg config) []string {
	env := []string{
		"RATE_LIMIT_RPS=0",
		"CLIENT_RATE_LIMIT_RPS=" + strconv.FormatFloat(cfg.clientRPS, 'f', -1, 64),
		// The per-request log line is part of the real cost of a refused
		// call: keep it.
		"LOG_LEVEL=info",
	}
	if cfg.gomaxprocs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(cfg.gomaxprocs))
	}
	return env
}
