package config

import (
	"strconv"
	"time"
)

// Defaults of the gateway's admission control (SPEC section 5; README
// "Overload").
const (
	// DefaultAdmissionMaxInFlight is off: a deployment sets the calls its
	// workers can serve (deploy/ sets it).
	DefaultAdmissionMaxInFlight   = 0
	DefaultAdmissionMinInFlight   = 16
	DefaultAdmissionTargetLatency = 250 * time.Millisecond
)

// Admission is the gateway's admission control: past its limit of calls in
// flight a call is refused at once, 503 overloaded.
type Admission struct {
	// ADMISSION_MAX_IN_FLIGHT, default 0 (off): the most calls one gateway
	// lets wait for a worker at once; the limit starts there.
	MaxInFlight int
	// ADMISSION_MIN_IN_FLIGHT, default 16: the limit never goes below it.
	MinInFlight int
	// ADMISSION_TARGET_LATENCY, default 250ms: more than a tenth of a
	// limit's worth of calls answered slower (or 202) cut the limit by a
	// tenth; calls within it raise it back.
	TargetLatency time.Duration
}

func (p *parser) admission() Admission {
	a := Admission{
		MaxInFlight:   p.integer("ADMISSION_MAX_IN_FLIGHT", DefaultAdmissionMaxInFlight, 0, 1<<20),
		MinInFlight:   p.integer("ADMISSION_MIN_IN_FLIGHT", DefaultAdmissionMinInFlight, 1, 1<<20),
		TargetLatency: p.duration("ADMISSION_TARGET_LATENCY", DefaultAdmissionTargetLatency),
	}
	if a.MaxInFlight > 0 && a.MinInFlight > a.MaxInFlight {
		p.fail("ADMISSION_MIN_IN_FLIGHT", strconv.Itoa(a.MinInFlight), "at most ADMISSION_MAX_IN_FLIGHT ("+strconv.Itoa(a.MaxInFlight)+")")
	}
	return a
}
