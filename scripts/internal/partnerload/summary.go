package partnerload

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Summary is the figures of a load's calls.
type Summary struct {
	Phases   []string               // in order
	ByPhase  map[string]map[int]int // phase, HTTP status (0: none): calls
	ByMethod map[string]int
	Total    int
	Repeats  int // repeats of a 202'd call
	Slowest  time.Duration
	// SlowestIn is the slowest call of each phase.
	SlowestIn map[string]Call
	Failures  int // what the load recorded as unexpected
}

// Summarize counts the calls of ld by phase, status and method.
func Summarize(ld *Load) *Summary {
	marks := ld.Marks()
	s := &Summary{ByPhase: map[string]map[int]int{}, ByMethod: map[string]int{}, SlowestIn: map[string]Call{},
		Failures: len(ld.Failures())}
	for _, m := range marks {
		s.Phases = append(s.Phases, m.Name)
		s.ByPhase[m.Name] = map[int]int{}
	}
	for _, c := range ld.Calls() {
		ph := PhaseOf(marks, c.Start)
		s.ByPhase[ph][c.Status]++
		if c.Dur > s.SlowestIn[ph].Dur {
			s.SlowestIn[ph] = c
		}
		s.ByMethod[c.Method]++
		s.Total++
		if c.Repeat {
			s.Repeats++
		}
		s.Slowest = max(s.Slowest, c.Dur)
	}
	return s
}

// PhaseOf is the name of the phase t is in.
func PhaseOf(marks []Mark, t time.Time) string {
	ph := marks[0].Name
	for _, m := range marks {
		if !t.Before(m.At) {
			ph = m.Name
		}
	}
	return ph
}

// NextMark is the start of the phase after the one t is in, or now.
func NextMark(marks []Mark, t time.Time) time.Time {
	for _, m := range marks {
		if m.At.After(t) {
			return m.At
		}
	}
	return time.Now()
}

// Recovery is, over the gateways, the longest time from `from` to the first
// served call after the last unserved one among those sent from at and
// answered before until (a call answered later met what came next); a
// gateway that served every call counts 0. It also returns how many calls
// were not served, and -1 if a gateway served nothing after.
func Recovery(calls []Call, at, from, until time.Time, gateways int) (time.Duration, int) {
	worst, unserved := time.Duration(0), 0
	for gw := range gateways {
		var lastBad time.Time
		for _, c := range calls {
			if c.Gateway == gw && !c.Start.Before(at) && c.Start.Add(c.Dur).Before(until) && !c.Served() {
				lastBad = c.Start
				unserved++
			}
		}
		after := at
		if !lastBad.IsZero() {
			after = lastBad
		}
		served := time.Time{}
		for _, c := range calls {
			if c.Gateway == gw && c.Start.After(after) && c.Served() {
				served = c.Start
				break
			}
		}
		if served.IsZero() {
			return -1, unserved
		}
		if lastBad.IsZero() {
			continue // this gateway never stopped serving
		}
		worst = max(worst, served.Sub(from))
	}
	return max(worst, 0), unserved
}

// Codes returns the statuses seen, in order.
func (s *Summary) Codes() []int {
	var cs []int
	for _, m := range s.ByPhase {
		for code := range m {
			if !slices.Contains(cs, code) {
				cs = append(cs, code)
			}
		}
	}
	slices.Sort(cs)
	return cs
}

// Calls is the number of calls of phase ph.
func (s *Summary) Calls(ph string) int {
	n := 0
	for _, v := range s.ByPhase[ph] {
		n += v
	}
	return n
}

// Print writes the table of calls by phase and status, with extra columns
// after the statuses (head names them, cell fills them by phase; nil for
// none), then the calls by method.
func (s *Summary) Print(w io.Writer, head []string, cell func(phase string) []string) {
	cs := s.Codes()
	fmt.Fprintf(w, "\n%-14s %7s", "phase", "calls")
	for _, code := range cs {
		fmt.Fprintf(w, " %6s", statusName(code))
	}
	for _, h := range head {
		fmt.Fprintf(w, " %9s", h)
	}
	fmt.Fprintln(w)
	for _, ph := range s.Phases {
		fmt.Fprintf(w, "%-14s %7d", ph, s.Calls(ph))
		for _, code := range cs {
			fmt.Fprintf(w, " %6d", s.ByPhase[ph][code])
		}
		if cell != nil {
			for _, v := range cell(ph) {
				fmt.Fprintf(w, " %9s", v)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-14s %7d", "total", s.Total)
	for _, code := range cs {
		n := 0
		for _, m := range s.ByPhase {
			n += m[code]
		}
		fmt.Fprintf(w, " %6d", n)
	}
	fmt.Fprintln(w)
	var ms []string
	for m, n := range s.ByMethod {
		ms = append(ms, fmt.Sprintf("%s %d", m, n))
	}
	slices.Sort(ms)
	fmt.Fprintf(w, "\ncalls: %d (%d of them repeats of a 202'd call); by method: %s\n", s.Total, s.Repeats, strings.Join(ms, ", "))
}

func statusName(code int) string {
	if code == 0 {
		return "none"
	}
	return fmt.Sprint(code)
}
