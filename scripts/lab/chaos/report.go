package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/amqpx"
)

// scenario is the whole run; what it makes is undone by r.td.
func (r *runner) scenario(ctx context.Context) error {
	if err := r.servers(ctx); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	r.ld = partnerload.New(r.st.Load)
	return r.drive(ctx)
}

// judge checks the calls, the faults, the poison and the processes.
func (r *runner) judge(ctx context.Context) error {
	r.sum = partnerload.Summarize(r.ld)
	calls, marks := r.ld.Calls(), r.ld.Marks()
	ch, errs := partnerload.Judge(ctx, r.st.DB, r.ld, r.cfg.RPCTimeout)
	for _, f := range r.faults {
		f.recovery, f.unserved = partnerload.Recovery(calls, f.at, f.back, partnerload.NextMark(marks, f.at), len(r.st.APIs))
		switch {
		case f.recovery < 0:
			errs = append(errs, fmt.Errorf("%s: the gateway served nothing after it", f.name))
		case f.recovery > partnerload.MaxRecovery:
			errs = append(errs, fmt.Errorf("%s: serving again %s after it was over, past %s", f.name, f.recovery, partnerload.MaxRecovery))
		}
	}
	r.checked, r.byPhase, r.replays = ch.Total, ch.ByPhase, ch.Replays
	errs = append(errs, r.judgePoison(ctx)...)
	errs = append(errs, r.judgeProcesses(ctx)...)
	return errors.Join(errs...)
}

// judgePoison checks that the dead-letter queue holds the poison messages
// and nothing else, and that none of them left a row.
func (r *runner) judgePoison(ctx context.Context) []error {
	if r.poison == nil {
		return nil
	}
	var errs []error
	q, err := r.rabbit.Queue(ctx, r.vhost, amqpx.DeadQueue)
	if err != nil {
		return []error{err}
	}
	if want := r.poison.dlqFirst + len(r.poison.kinds); q.Messages != want {
		errs = append(errs, fmt.Errorf("the dead-letter queue holds %d messages, want the %d poison messages only", q.Messages, want))
	}
	var tenants, ledger int
	err = r.st.DB.QueryRow(ctx, `SELECT (SELECT count(*) FROM tenants WHERE remote_id LIKE $1),
		(SELECT count(*) FROM command_ledger WHERE request_id LIKE $2)`,
		"p"+r.cfg.Tag+"x%", "poison-"+r.cfg.Tag+"-%").Scan(&tenants, &ledger)
	switch {
	case err != nil:
		errs = append(errs, err)
	case tenants != 0 || ledger != 0:
		errs = append(errs, fmt.Errorf("poison messages made %d customers and %d ledger rows, want none", tenants, ledger))
	}
	r.checked += 3
	return errs
}

// judgeProcesses checks that the gateway and every worker not killed on
// purpose still run, as the same processes, and are ready: nothing needed a
// restart.
func (r *runner) judgeProcesses(ctx context.Context) []error {
	var errs []error
	procs := append(r.st.Workers[:len(r.st.Workers):len(r.st.Workers)], r.st.Gateway)
	lost := 0
	for _, p := range procs {
		select {
		case <-p.Done():
			lost++
			continue
		default:
		}
		if !p.Ready(ctx) {
			errs = append(errs, fmt.Errorf("%s (pid %d) is not ready after the run", p.Name, p.Pid()))
		}
	}
	want := 0 // the workers killed and stopped on purpose
	for _, f := range r.faults {
		if f.name == "worker-kill9" || f.name == "worker-term" {
			want++
		}
	}
	if lost != want {
		errs = append(errs, fmt.Errorf("%d processes exited during the run, want %d (the workers killed and stopped)", lost, want))
	}
	return errs
}

func (r *runner) print(w io.Writer, took time.Duration) {
	fmt.Fprintf(w, "\nchaos: 1 gateway, 3 workers (replaced when lost), %d partners, %.0f calls/s offered, RPC_TIMEOUT %s, AMQP heartbeat %ds\n",
		len(r.st.Load.Partners), r.cfg.Rate, r.cfg.RPCTimeout, heartbeat)
	if r.sum == nil {
		return
	}
	byName := map[string]*faultRun{}
	for _, f := range r.faults {
		byName[f.name] = f
	}
	r.sum.Print(w, []string{"slowest", "checked", "fault", "recovery"}, func(ph string) []string {
		cells := []string{r.sum.SlowestIn[ph].Dur.Round(time.Millisecond).String(), fmt.Sprint(r.byPhase[ph]), "", ""}
		if f := byName[ph]; f != nil {
			cells[2] = f.back.Sub(f.at).Round(10 * time.Millisecond).String()
			cells[3] = "never"
			if f.recovery >= 0 {
				cells[3] = f.recovery.Round(10 * time.Millisecond).String()
			}
		}
		return cells
	})
	slow := r.sum.SlowestIn[""]
	for _, c := range r.sum.SlowestIn {
		if c.Dur > slow.Dur {
			slow = c
		}
	}
	fmt.Fprintf(w, "slowest call: %s, %s %s answered %d in %s (limit RPC_TIMEOUT + %s = %s)\n", slow.Dur.Round(time.Millisecond),
		slow.Method, slow.RequestID, slow.Status, partnerload.PhaseOf(r.ld.Marks(), slow.Start), partnerload.OverRPCTimeout, r.cfg.RPCTimeout+partnerload.OverRPCTimeout)
	for _, f := range r.faults {
		fmt.Fprintf(w, "%-16s %s; %d calls not served; serving again %s after it was over (limit %s)\n",
			f.name+":", f.note, f.unserved, f.recovery.Round(time.Millisecond), partnerload.MaxRecovery)
	}
	if r.poison != nil {
		fmt.Fprintf(w, "poison messages: %d dead-lettered, none took effect: %v\n", len(r.poison.kinds), r.poison.kinds)
	}
	fmt.Fprintf(w, "202'd calls repeated after Redis lost their record, answered from the ledger: %d\n", r.replays)
	fmt.Fprintf(w, "effects checked in PostgreSQL and the ledger: %d; failures: %d\n", r.checked, r.sum.Failures)
	fmt.Fprintf(w, "total run time: %s\n", took.Round(time.Second))
}
