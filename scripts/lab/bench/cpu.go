package bench

import (
	"bytes"
	"cmp"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// Classes of processes in a CPU snapshot. Anything else is "other" and is
// reported by command name.
const (
	classGateway  = "gateway"
	classWorkers  = "workers"
	classBench    = "bench" // the load generator itself
	classPeer     = "peer"  // the asynq peer's front and workers (peer.go), never own
	classRabbitMQ = "rabbitmq"
	classPostgres = "postgres"
	classRedis    = "redis"
	classOther    = "other"
)

// CPU is the CPU time spent during one phase. Own means the gateway and the
// workers of the bench's stack. The servers serve whatever else runs on the
// machine too, so their share is context, not our cost.
type CPU struct {
	Seconds         float64            `json:"seconds"`
	Cores           int                `json:"cores"`
	GatewayMs       float64            `json:"gatewayMs"`
	WorkersMs       float64            `json:"workersMs"`
	OwnMsPerReq     float64            `json:"ownMsPerReq"`
	GatewayMsPerReq float64            `json:"gatewayMsPerReq"`
	WorkersMsPerReq float64            `json:"workersMsPerReq"`
	MsPerReq        map[string]float64 `json:"msPerReqByClass"` // every class, own included
	MachineBusyPct  float64            `json:"machineBusyPct"`  // of all cores, from /proc/stat
	MachineBusyCPUs float64            `json:"machineBusyCpus"` // the same in cores
	UnseenCPUs      float64            `json:"unseenBusyCpus"`  // busy, but in no process alive at both ends (short-lived processes, kernel)
	TopOthers       []ProcCPU          `json:"topOthers"`       // the busiest other processes, in cores
}

// ProcCPU is the CPU of the other processes of one command name, in cores.
type ProcCPU struct {
	Comm  string  `json:"comm"`
	Cores float64 `json:"cores"`
}

// procSample is one process's cumulative CPU time.
type procSample struct {
	comm, class string
	ticks       uint64
}

// cpuSnapshot is the cumulative CPU time of every process and of the machine.
type cpuSnapshot struct {
	at        time.Time
	procs     map[int]procSample
	all, idle uint64
	cores     int
}

// Idle is the CPU the gateway and the workers use with no load at all
// (metrics, heartbeats, pollers), in milliseconds per second.
type Idle struct {
	GatewayMsPerSec float64 `json:"gatewayMsPerSec"`
	WorkersMsPerSec float64 `json:"workersMsPerSec"`
	Seconds         float64 `json:"seconds"`
}

// idleCPU measures Idle over d.
func (s *stack) idleCPU(ctx context.Context, d time.Duration) (Idle, error) {
	before := s.cpuSnapshot()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return Idle{}, ctx.Err()
	}
	c := cpuDelta(before, s.cpuSnapshot(), 0)
	return Idle{GatewayMsPerSec: c.GatewayMs / c.Seconds, WorkersMsPerSec: c.WorkersMs / c.Seconds, Seconds: c.Seconds}, nil
}

// measureCPU runs phase and attaches the CPU spent meanwhile to its row.
func (s *stack) measureCPU(phase func() Row) Row {
	sum0, n0 := s.published()
	before := s.cpuSnapshot()
	row := phase()
	after := s.cpuSnapshot()
	row.CPU = cpuDelta(before, after, row.OK)
	row.CPUPerReq = row.CPU.OwnMsPerReq
	if sum1, n1 := s.published(); n1 > n0 {
		row.PerMessage = (sum1 - sum0) / (n1 - n0)
	}
	return row
}

// published is the commands and the messages the gateways have published,
// read off their metrics; zeros when they cannot be read.
func (s *stack) published() (commands, messages float64) {
	for _, g := range s.Gateways {
		v, err := scrapeValues(context.Background(), g.Metrics, "oneoffice_gateway_publish_batch_commands_sum",
			"oneoffice_gateway_publish_batch_commands_count")
		if err != nil {
			return 0, 0
		}
		commands, messages = commands+v[0], messages+v[1]
	}
	return commands, messages
}

// measurePeerCPU is measureCPU for a phase of the peer, whose own CPU is
// that of its processes.
func (s *stack) measurePeerCPU(phase func() Row) Row {
	row := s.measureCPU(phase)
	row.CPUPerReq = row.CPU.MsPerReq[classPeer]
	return row
}

func (s *stack) cpuSnapshot() cpuSnapshot {
	gw, workers := s.Pids()
	classes := map[int]string{gw: classGateway, os.Getpid(): classBench}
	for _, pid := range workers {
		classes[pid] = classWorkers
	}
	for _, pid := range s.peerPids {
		classes[pid] = classPeer
	}
	snap := cpuSnapshot{at: time.Now(), procs: processes(classes)}
	snap.all, snap.idle, snap.cores, _ = testenv.MachineCPU()
	return snap
}

func cpuDelta(a, b cpuSnapshot, requests int) *CPU {
	secs := b.at.Sub(a.at).Seconds()
	byClass := make(map[string]float64) // ms
	byComm := make(map[string]float64)  // ms, other processes
	for pid, pb := range b.procs {
		pa, ok := a.procs[pid]
		if !ok || pa.comm != pb.comm || pa.ticks > pb.ticks {
			continue // started during the phase, or pid reused: unseen
		}
		ms := float64(pb.ticks-pa.ticks) * float64(testenv.ClockTick) / float64(time.Millisecond)
		byClass[pb.class] += ms
		if pb.class == classOther {
			byComm[pb.comm] += ms
		}
	}
	c := &CPU{Seconds: secs, Cores: b.cores, GatewayMs: byClass[classGateway], WorkersMs: byClass[classWorkers],
		MsPerReq: make(map[string]float64)}
	if requests > 0 {
		for class, ms := range byClass {
			c.MsPerReq[class] = ms / float64(requests)
		}
	}
	c.GatewayMsPerReq, c.WorkersMsPerReq = c.MsPerReq[classGateway], c.MsPerReq[classWorkers]
	c.OwnMsPerReq = c.GatewayMsPerReq + c.WorkersMsPerReq
	if all := b.all - a.all; all > 0 && secs > 0 {
		busy := all - (b.idle - a.idle)
		c.MachineBusyPct = 100 * float64(busy) / float64(all)
		c.MachineBusyCPUs = c.MachineBusyPct / 100 * float64(b.cores)
		var seen float64
		for _, ms := range byClass {
			seen += ms
		}
		c.UnseenCPUs = max(0, c.MachineBusyCPUs-seen/1000/secs)
		c.TopOthers = topOthers(byComm, secs, 4)
	}
	return c
}

func topOthers(byComm map[string]float64, secs float64, n int) []ProcCPU {
	var out []ProcCPU
	for comm, ms := range byComm {
		out = append(out, ProcCPU{Comm: comm, Cores: ms / 1000 / secs})
	}
	slices.SortFunc(out, func(x, y ProcCPU) int { return cmp.Compare(y.Cores, x.Cores) })
	return out[:min(n, len(out))]
}

// processes samples every process; classes names the bench's own by pid.
func processes(classes map[int]string) map[int]procSample {
	out := make(map[int]procSample)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ticks, err := testenv.ProcCPU(pid)
		if err != nil {
			continue // gone meanwhile
		}
		class, ok := classes[pid]
		if !ok {
			class = serverClass(pid, comm)
		}
		out[pid] = procSample{comm: comm, class: class, ticks: ticks}
	}
	return out
}

// serverClass recognises the shared servers. Only the broker's own beam.smp
// counts as RabbitMQ: rabbitmqctl runs in a beam.smp too.
func serverClass(pid int, comm string) string {
	switch comm {
	case "postgres":
		return classPostgres
	case "redis-server":
		return classRedis
	case "beam.smp":
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if bytes.Contains(cmdline, []byte("rabbit\x00boot")) {
			return classRabbitMQ
		}
	}
	return classOther
}
