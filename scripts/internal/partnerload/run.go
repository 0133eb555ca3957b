package partnerload

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// Limits a run under faults (lab chaos, lab cluster) is judged by.
const (
	// MaxRecovery is how soon after a fault the gateways must serve again.
	MaxRecovery = 20 * time.Second
	// OverRPCTimeout is how far past RPC_TIMEOUT a call may take.
	OverRPCTimeout = time.Second
	// DrainLimit bounds the wait for the queue to empty after the load.
	DrainLimit = 90 * time.Second
)

// Flags is the command line of a run under faults.
type Flags struct {
	Tag        string // in every id, request id and partner name the run makes
	Rate       float64
	Phase      time.Duration
	RPCTimeout time.Duration
	Flows      int
	Keep       bool
}

// Register adds the flags to fs with the run's defaults.
func (f *Flags) Register(fs *flag.FlagSet, tag string, rate float64, flows int) {
	fs.StringVar(&f.Tag, "tag", tag+strconv.Itoa(os.Getpid()), "names the ids and request ids of the run (lower-case letters and digits)")
	fs.Float64Var(&f.Rate, "rate", rate, "calls per second offered over the gateways")
	fs.DurationVar(&f.Phase, "phase", 10*time.Second, "length of each phase")
	fs.DurationVar(&f.RPCTimeout, "rpc-timeout", 4*time.Second, "RPC_TIMEOUT of the gateways")
	fs.IntVar(&f.Flows, "flows", flows, "partner flows running at once")
	fs.BoolVar(&f.Keep, "keep", false, "keep the stack's work directory (process logs)")
}

// Validate checks the tag.
func (f *Flags) Validate() error {
	for _, c := range f.Tag {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fmt.Errorf("-tag %q: lower-case letters and digits only", f.Tag)
		}
	}
	return nil
}

// Stack is a testenv stack for a partner load: two partners, a pool on its
// database and the load's Config for its gateways and partners.
type Stack struct {
	*testenv.Stack
	DB   *pgxpool.Pool
	Load Config
}

// UpStack brings sc up on srv with the settings a partner load needs, the
// partners "<sc.Name> <tag> 1" and 2, and a pool of its database; td
// undoes it. The processes run in their own process group and die with
// this program.
func UpStack(ctx context.Context, srv testenv.Servers, sc testenv.StackConfig, f Flags, dbConns int,
	td *testenv.Teardown) (*Stack, error) {
	partner := func(i int) string { return fmt.Sprintf("%s %s %d", sc.Name, f.Tag, i) }
	sc.Partner, sc.Keep, sc.LogFiles = partner(1), f.Keep, true
	sc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	sc.Env = append(sc.Env,
		"RPC_TIMEOUT="+f.RPCTimeout.String(),
		// A monthly order can be renewed twice, as the flows do.
		"RENEWAL_WINDOW_DAYS=400",
		"WORKER_CONCURRENCY=16",
		"WORKER_PREFETCH=32",
		"DATABASE_MAX_CONNS="+strconv.Itoa(dbConns),
		"LOG_LEVEL=info")
	st, err := srv.UpStack(ctx, sc)
	if err != nil {
		return nil, err
	}
	td.Add("close the stack", func(ctx context.Context) error { return st.Close(2 * time.Minute) })
	second, err := st.Admin(ctx, "keys", "create", "--partner", partner(2))
	if err != nil {
		return nil, fmt.Errorf("keys create: %w", err)
	}
	s := &Stack{Stack: st, Load: Config{Tag: f.Tag, Gateways: st.APIs, Rate: f.Rate, Flows: f.Flows, RPCTimeout: f.RPCTimeout}}
	if s.DB, err = pgxpool.New(ctx, st.DatabaseURL); err != nil {
		return nil, err
	}
	td.Add("close the database pool", func(context.Context) error { s.DB.Close(); return nil })
	for i, key := range []string{st.Key, second} {
		p := Partner{Key: key}
		if err := s.DB.QueryRow(ctx, `SELECT id FROM partners WHERE name = $1`, partner(i+1)).Scan(&p.ID); err != nil {
			return nil, fmt.Errorf("partner %s: %w", partner(i+1), err)
		}
		s.Load.Partners = append(s.Load.Partners, p)
	}
	return s, nil
}

// Judge makes the checks of every run under faults once the load has ended
// and the queue drained: what the load saw as unexpected, every call within
// RPC_TIMEOUT + OverRPCTimeout, and Check against the database.
func Judge(ctx context.Context, db *pgxpool.Pool, ld *Load, rpcTimeout time.Duration) (*Checked, []error) {
	var errs []error
	for _, f := range ld.Failures() {
		errs = append(errs, errors.New(f))
	}
	for _, c := range ld.Calls() {
		if c.Dur > rpcTimeout+OverRPCTimeout {
			errs = append(errs, fmt.Errorf("%s %s took %s, past RPC_TIMEOUT %s + %s", c.Method, c.RequestID,
				c.Dur.Round(time.Millisecond), rpcTimeout, OverRPCTimeout))
		}
	}
	ch, err := Check(ctx, db, ld)
	if err != nil {
		return &Checked{}, append(errs, err)
	}
	return ch, append(errs, ch.Errs...)
}

// AwaitServing waits until every gateway served its last 20 calls sent
// after since (ServingSince), for up to MaxRecovery and a little, and
// reports whether they did.
func (l *Load) AwaitServing(ctx context.Context, since time.Time) bool {
	ctx, cancel := context.WithTimeout(ctx, MaxRecovery+5*time.Second)
	defer cancel()
	return backoff.Retry(func() error {
		if !l.ServingSince(since, 20) {
			return errors.New("not serving")
		}
		return nil
	}, backoff.WithContext(backoff.NewConstantBackOff(100*time.Millisecond), ctx)) == nil
}

// Sleep waits for d or the end of ctx.
func Sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Logger is the progress line of a run called name, on stderr.
func Logger(name string) func(format string, args ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s: %s %s\n", name, time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}
