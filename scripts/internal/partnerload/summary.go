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
	// Slowest is the slowest call, SlowestIn that of each phase.
	Slowest   Call
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
		if c.Dur > s.Slowest.Dur {
			s.Slowest = c
		}
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

// Print writes the table of calls by phase and status, with each phase's
// slowest call and its effects checked (by phase), then the calls by method.
func (s *Summary) Print(w io.Writer, checked map[string]int) {
	var codes []int
	for _, m := range s.ByPhase {
		for code := range m {
			if !slices.Contains(codes, code) {
				codes = append(codes, code)
			}
		}
	}
	slices.Sort(codes)
	fmt.Fprintf(w, "\n%-17s %7s", "phase", "calls")
	for _, code := range codes {
		fmt.Fprintf(w, " %6s", statusName(code))
	}
	fmt.Fprintf(w, " %9s %9s\n", "slowest", "checked")
	totals := map[int]int{}
	for _, ph := range s.Phases {
		calls := 0
		for code, n := range s.ByPhase[ph] {
			calls += n
			totals[code] += n
		}
		fmt.Fprintf(w, "%-17s %7d", ph, calls)
		for _, code := range codes {
			fmt.Fprintf(w, " %6d", s.ByPhase[ph][code])
		}
		fmt.Fprintf(w, " %9s %9d\n", s.SlowestIn[ph].Dur.Round(time.Millisecond), checked[ph])
	}
	fmt.Fprintf(w, "%-17s %7d", "total", s.Total)
	for _, code := range codes {
		fmt.Fprintf(w, " %6d", totals[code])
	}
	var ms []string
	for m, n := range s.ByMethod {
		ms = append(ms, fmt.Sprintf("%s %d", m, n))
	}
	slices.Sort(ms)
	fmt.Fprintf(w, "\n\ncalls: %d (%d of them repeats of a 202'd call); by method: %s\n", s.Total, s.Repeats, strings.Join(ms, ", "))
}

func statusName(code int) string {
	if code == 0 {
		return "none"
	}
	return fmt.Sprint(code)
}
