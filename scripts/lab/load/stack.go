package load

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// StackFlags are the command line of a measurement's stack (lab bench, lab
// preauth): the shared servers it is carved from and its processes'
// settings.
type StackFlags struct {
	Servers    testenv.Servers // the shared PostgreSQL, RabbitMQ and Redis
	RedisDB    int             // the stack's Redis DB; 0 claims the first free one
	Keep       bool            // keep the work directory (binaries, process logs)
	GOMAXPROCS int             // of the gateway and the workers; 0 leaves their default (1)
}

// Register adds the flags to fs, with the tests' environment variables
// (TEST_POSTGRES_URL, ...) as the defaults.
func (f *StackFlags) Register(fs *flag.FlagSet) (err error) {
	if f.Servers, err = testenv.FromEnv(); err != nil {
		return err
	}
	fs.StringVar(&f.Servers.PostgresURL, "postgres", f.Servers.PostgresURL, "admin URL of PostgreSQL")
	fs.StringVar(&f.Servers.AMQPURL, "amqp", f.Servers.AMQPURL, "URL of RabbitMQ without vhost (the user gets the stack's vhost)")
	fs.StringVar(&f.Servers.RedisAddr, "redis", f.Servers.RedisAddr, "Redis address")
	fs.IntVar(&f.RedisDB, "redis-db", 0, "Redis DB of the stack, claimed like the tests' and flushed before and after (0: the first free one)")
	fs.BoolVar(&f.Keep, "keep", false, "keep the work directory (binaries and process logs)")
	fs.IntVar(&f.GOMAXPROCS, "gomaxprocs", 0, "GOMAXPROCS of the gateway and the workers (0: their default, 1 unless GOMAXPROCS is exported)")
	return nil
}

// Validate checks the flags.
func (f *StackFlags) Validate() error {
	var errs []error
	if f.RedisDB != 0 && (f.RedisDB < testenv.FirstRedisDB || f.RedisDB > testenv.LastRedisDB) {
		errs = append(errs, fmt.Errorf("-redis-db must be 0 (claim a free one) or from %d to %d",
			testenv.FirstRedisDB, testenv.LastRedisDB))
	}
	if f.GOMAXPROCS < 0 {
		errs = append(errs, errors.New("-gomaxprocs must be 0 or more"))
	}
	return errors.Join(errs...)
}

// Procs is the GOMAXPROCS the gateway and the workers run with.
func (f StackFlags) Procs() string {
	if f.GOMAXPROCS > 0 {
		return strconv.Itoa(f.GOMAXPROCS)
	}
	return cmp.Or(os.Getenv("GOMAXPROCS"), "1")
}

// Up brings sc up with the flags: its processes log to files in the work
// directory, run without a partner rate limit and with the per-request log
// line (part of the real cost of a call), in their own process group (a
// Ctrl-C reaches the measurement only, which stops them in order) and die
// with it. When it fails half way, what it made is removed again.
func (f StackFlags) Up(ctx context.Context, sc testenv.StackConfig, logf func(string, ...any)) (*testenv.Stack, error) {
	srv := f.Servers
	srv.Logf = logf
	sc.RedisDB, sc.Keep, sc.LogFiles = f.RedisDB, f.Keep, true
	sc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	sc.Env = append(sc.Env, "RATE_LIMIT_RPS=0", "LOG_LEVEL=info")
	if f.GOMAXPROCS > 0 {
		sc.Env = append(sc.Env, "GOMAXPROCS="+strconv.Itoa(f.GOMAXPROCS))
	}
	return srv.UpStack(ctx, sc)
}
