package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads docker-compose.yml the way docker compose does: project
// directory, interpolation of env, paths resolved, the model checked.
func loadCompose(t *testing.T, env ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"},
		cli.WithWorkingDirectory("."),
		cli.WithEnv(env),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

var (
	dependencies = []string{"postgres", "redis", "rabbitmq"}
	gateways     = []string{"gateway1", "gateway2"}
	workers      = []string{"worker1", "worker2", "worker3"}
)

func TestComposeHasTheWholeStack(t *testing.T) {
	p := loadCompose(t)
	want := slices.Concat(dependencies, []string{"migrate"}, gateways, workers, []string{"lb", "prometheus", "grafana", "jaeger"})
	got := p.ServiceNames()
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	if p.Name != "oneoffice" {
		t.Errorf("project name %q, want oneoffice", p.Name)
	}
}

// scripts/services.sh starts postgres, redis and rabbitmq alone from this
// file: they must depend on nothing, publish the loopback ports the tests
// use, and say when they are healthy.
func TestComposeDependenciesStartAlone(t *testing.T) {
	p := loadCompose(t)
	ports := map[string][]string{"postgres": {"5432"}, "redis": {"6379"}, "rabbitmq": {"5672", "15692"}}
	for _, name := range dependencies {
		s := p.Services[name]
		if len(s.DependsOn) > 0 {
			t.Errorf("%s depends on %v: services.sh starts it alone", name, s.GetDependencies())
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s has no health check", name)
		}
		var published []string
		for _, pc := range s.Ports {
			if pc.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %s on %q, want loopback only", name, pc.Published, pc.HostIP)
			}
			published = append(published, pc.Published)
		}
		if !slices.Equal(published, ports[name]) {
			t.Errorf("%s publishes %v, want %v", name, published, ports[name])
		}
	}
}

func TestComposeStartOrder(t *testing.T) {
	p := loadCompose(t)
	wantDeps := func(name string, want map[string]string) {
		t.Helper()
		s := p.Services[name]
		for dep, cond := range want {
			d, ok := s.DependsOn[dep]
			if !ok || d.Condition != cond {
				t.Errorf("%s: depends_on %s %q, want %q", name, dep, d.Condition, cond)
			}
			if _, ok := p.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is no service", name, dep)
			}
			if cond == types.ServiceConditionHealthy && p.Services[dep].HealthCheck == nil {
				t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
			}
		}
	}
	wantDeps("migrate", map[string]string{"postgres": types.ServiceConditionHealthy})
	app := map[string]string{
		"migrate":  types.ServiceConditionCompletedSuccessfully,
		"redis":    types.ServiceConditionHealthy,
		"rabbitmq": types.ServiceConditionHealthy,
	}
	for _, name := range slices.Concat(gateways, workers) {
		wantDeps(name, app)
	}
	wantDeps("lb", map[string]string{"gateway1": types.ServiceConditionStarted, "gateway2": types.ServiceConditionStarted})
	wantDeps("grafana", map[string]string{"prometheus": types.ServiceConditionHealthy})
	for _, name := range []string{"lb", "prometheus", "grafana"} {
		if p.Services[name].HealthCheck == nil {
			t.Errorf("%s has no health check", name)
		}
	}
	if cmd := p.Services["migrate"].Command; !slices.Equal(cmd, types.ShellCommand{"migrate"}) {
		t.Errorf("migrate runs %v, want the gateway's migrate", cmd)
	}
}

// The provisioner's services run the image of deploy/Dockerfile, hardened,
// with the settings of the SPEC and one tenant volume for all workers.
func TestComposeProvisionerServices(t *testing.T) {
	p := loadCompose(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Concat([]string{"migrate"}, gateways, workers) {
		s := p.Services[name]
		if s.Image != "oneoffice/provisioner:latest" {
			t.Errorf("%s: image %q", name, s.Image)
		}
		if s.Build == nil || s.Build.Context != root || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s: build %+v, want context %s and deploy/Dockerfile", name, s.Build, root)
		}
		if !s.ReadOnly || s.User != "65532:65532" || !slices.Equal(s.CapDrop, []string{"ALL"}) {
			t.Errorf("%s: read_only %v, user %q, cap_drop %v: want a read-only root, non-root, no capabilities",
				name, s.ReadOnly, s.User, s.CapDrop)
		}
		for _, k := range []string{"DATABASE_URL", "REDIS_URL", "AMQP_URL", "METRICS_ADDR"} {
			if v := s.Environment[k]; v == nil || *v == "" {
				t.Errorf("%s: %s not set", name, k)
			}
		}
	}
	for _, name := range workers {
		s := p.Services[name]
		if !slices.Equal(s.Entrypoint, types.ShellCommand{"/usr/local/bin/worker"}) {
			t.Errorf("%s runs %v, want the worker", name, s.Entrypoint)
		}
		root := s.Environment["STORAGE_ROOT"]
		mounted := false
		for _, v := range s.Volumes {
			mounted = mounted || (v.Type == types.VolumeTypeVolume && v.Source == "tenants" && root != nil && v.Target == *root)
		}
		if !mounted {
			t.Errorf("%s does not mount the shared tenants volume at STORAGE_ROOT", name)
		}
	}
}

// Every file the stack mounts exists, and the monitoring services get the
// files prom-check.sh checks: the shipped rules and dashboard.
func TestComposeMountsExist(t *testing.T) {
	p := loadCompose(t)
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", name, v.Source, err)
			}
		}
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	want := map[string][]string{
		"prometheus": {abs("prometheus/rules")},
		"grafana":    {abs("grafana/oneoffice-dashboard.json"), abs("grafana/provisioning/dashboards.yml")},
		"lb":         {abs("compose/haproxy.cfg")},
	}
	for name, sources := range want {
		var got []string
		for _, v := range p.Services[name].Volumes {
			got = append(got, v.Source)
		}
		for _, src := range sources {
			if !slices.Contains(got, src) {
				t.Errorf("%s does not mount %s (mounts %v)", name, src, got)
			}
		}
	}
	cfg, err := os.ReadFile("compose/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	for _, gw := range gateways {
		if !strings.Contains(string(cfg), "server "+gw+" "+gw+":8080") {
			t.Errorf("haproxy.cfg does not balance over %s", gw)
		}
	}
	prom, err := os.ReadFile("compose/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"oneoffice-gateway", "oneoffice-worker", "rabbitmq"} {
		if !strings.Contains(string(prom), "job_name: "+job+"\n") {
			t.Errorf("compose/prometheus.yml has no job %s", job)
		}
	}
}

func TestComposeInterpolatesTheImage(t *testing.T) {
	p := loadCompose(t, "ONEOFFICE_IMAGE=registry.example.com/oo:1.2.3")
	for _, name := range slices.Concat(gateways, workers) {
		if img := p.Services[name].Image; img != "registry.example.com/oo:1.2.3" {
			t.Errorf("%s: image %q with ONEOFFICE_IMAGE set", name, img)
		}
	}
}

// The Dockerfile builds static binaries into a distroless, non-root image
// with the runtime settings the service was measured with.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from, user []string
	env := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimSuffix(line, "\\"))
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case f[0] == "FROM":
			from = append(from, f[1])
		case f[0] == "USER":
			user = append(user, f[1])
		case f[0] == "ENV" || (len(from) > 0 && strings.Contains(f[0], "=")):
			for _, kv := range f {
				env[kv] = true
			}
		}
	}
	if !slices.Equal(from, []string{"golang:${GO_VERSION}", "gcr.io/distroless/static-debian12:nonroot"}) {
		t.Errorf("stages FROM %v", from)
	}
	if !strings.Contains(string(b), "ARG GO_VERSION=1.26\n") || !strings.Contains(string(b), "ENV CGO_ENABLED=0\n") ||
		!strings.Contains(string(b), "go build -trimpath") {
		t.Error("the build stage is not golang 1.26 with CGO_ENABLED=0 and -trimpath")
	}
	if !slices.Equal(user, []string{"65532:65532"}) {
		t.Errorf("USER %v, want 65532:65532 (distroless nonroot)", user)
	}
	for _, kv := range []string{"GOMAXPROCS=1", "GODEBUG=" + launcherGODEBUG(t)} {
		if !env[kv] {
			t.Errorf("the image does not set %s", kv)
		}
	}
}

// launcherGODEBUG is the GODEBUG setting the launchers add, read from
// scripts/lib/godebug.sh: export GODEBUG="${GODEBUG:+$GODEBUG,}schedtrace=N".
// Every deploy file sets the same value.
func launcherGODEBUG(t *testing.T) string {
	t.Helper()
	sh, err := os.ReadFile("../scripts/lib/godebug.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\$GODEBUG,\}(schedtrace=[0-9]+)"`).FindSubmatch(sh)
	if m == nil {
		t.Fatal("scripts/lib/godebug.sh exports no schedtrace setting")
	}
	return string(m[1])
}
