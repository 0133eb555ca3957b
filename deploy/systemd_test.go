package deploy

import (
	"bufio"
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// unit is a systemd unit file: every value of every key, by section, in the
// order of the file.
type unit map[string]map[string][]string

// readUnit parses a unit file the way systemd reads one: [Section] headers,
// Key=Value lines, # and ; comments, a trailing backslash continuing a line.
func readUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		for strings.HasSuffix(line, "\\") && sc.Scan() {
			n++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(sc.Text())
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is neither a section nor a setting", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// one is the value of a key set once.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Errorf("[%s] %s is set %d times, want once", section, key, len(vs))
		return ""
	}
	return vs[0]
}

// env is the unit's Environment= assignments (none of ours is quoted).
func (u unit) env() map[string]string {
	env := map[string]string{}
	for _, v := range u["Service"]["Environment"] {
		for _, kv := range strings.Fields(v) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	return env
}

// words are the space-separated values of a key, over all its lines.
func (u unit) words(section, key string) []string {
	var w []string
	for _, v := range u[section][key] {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// The systemd units run the installed binaries, one per program.
var systemdUnits = map[string]string{
	"gateway": "systemd/oneoffice-gateway.service",
	"worker":  "systemd/oneoffice-worker@.service",
}

// gatewayCommands are the admin subcommands of bin/gateway, read from the
// command table of gateway/main.go.
func gatewayCommands(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile("../gateway/main.go")
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][]string
	for _, m := range regexp.MustCompile(`\{name: "([a-z ]+)"`).FindAllSubmatch(b, -1) {
		cmds = append(cmds, strings.Fields(string(m[1])))
	}
	if len(cmds) == 0 || !slices.ContainsFunc(cmds, func(c []string) bool { return slices.Equal(c, []string{"migrate"}) }) {
		t.Fatalf("no command table in gateway/main.go (found %v)", cmds)
	}
	return cmds
}

// teardown is how long a process may take, after SHUTDOWN_TIMEOUT, to close
// its connections: teardownTimeout of its internal/app/app.go.
func teardown(t *testing.T, prog string) time.Duration {
	t.Helper()
	b, err := os.ReadFile("../" + prog + "/internal/app/app.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`const teardownTimeout = ([0-9]+) \* time\.Second`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s/internal/app/app.go has no teardownTimeout in seconds", prog)
	}
	d, err := time.ParseDuration(string(m[1]) + "s")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Every command line of the units, and every one their comments show, runs
// an installed binary of this repository: the gateway serving (no argument)
// or one of its admin subcommands, the worker with no argument.
func TestSystemdUnitsRunTheBinaries(t *testing.T) {
	cmds := gatewayCommands(t)
	worker, err := os.ReadFile("../worker/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(worker, []byte("os.Args")) {
		t.Fatal("worker/main.go reads arguments: check the units' worker command lines against them")
	}
	mention := regexp.MustCompile(`/usr/local/bin/oneoffice-([a-z]+)([ \t]+[a-z-]+)?`)
	for prog, path := range systemdUnits {
		u := readUnit(t, path)
		if start := u.one(t, "Service", "ExecStart"); start != "/usr/local/bin/oneoffice-"+prog {
			t.Errorf("%s: ExecStart=%s, want /usr/local/bin/oneoffice-%s with no argument", path, start, prog)
		}
		for key, lines := range u["Service"] {
			if !strings.HasPrefix(key, "Exec") {
				continue
			}
			for _, line := range lines {
				f := strings.Fields(strings.TrimLeft(line, "-@+!:|"))
				args := f[1:]
				switch f[0] {
				case "/usr/local/bin/oneoffice-gateway":
					if len(args) > 0 && !slices.ContainsFunc(cmds, func(c []string) bool {
						return len(args) >= len(c) && slices.Equal(args[:len(c)], c)
					}) {
						t.Errorf("%s: %s=%s names no subcommand of gateway/main.go", path, key, line)
					}
				case "/usr/local/bin/oneoffice-worker":
					if len(args) > 0 {
						t.Errorf("%s: %s=%s: the worker takes no argument", path, key, line)
					}
				default:
					t.Errorf("%s: %s=%s runs no binary of this repository", path, key, line)
				}
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mention.FindAllSubmatch(b, -1) {
			name, arg := string(m[1]), strings.TrimSpace(string(m[2]))
			if _, err := os.Stat("../" + name + "/main.go"); err != nil {
				t.Errorf("%s shows %s, which is no program of this repository", path, m[0])
			}
			if arg != "" && (name != "gateway" || !slices.ContainsFunc(cmds, func(c []string) bool { return c[0] == arg })) {
				t.Errorf("%s shows %q, which names no subcommand", path, m[0])
			}
		}
	}
}

// The units set the runtime settings of the other launchers, drain on
// SIGTERM within their stop timeout, and run hardened as a dedicated user.
func TestSystemdUnits(t *testing.T) {
	godebug := launcherGODEBUG(t)
	prom, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for prog, path := range systemdUnits {
		u := readUnit(t, path)
		env := u.env()
		if env["GODEBUG"] != godebug || env["GOMAXPROCS"] != "1" {
			t.Errorf("%s: GODEBUG %q GOMAXPROCS %q, want %s (scripts/lib/godebug.sh) and 1",
				path, env["GODEBUG"], env["GOMAXPROCS"], godebug)
		}
		if files := u["Service"]["EnvironmentFile"]; len(files) == 0 || files[0] != "/etc/oneoffice/oneoffice.env" {
			t.Errorf("%s: EnvironmentFile %v, want /etc/oneoffice/oneoffice.env first", path, files)
		}
		for _, key := range []string{"After", "Wants"} {
			if !slices.Contains(u.words("Unit", key), "network-online.target") {
				t.Errorf("%s: %s= does not name network-online.target", path, key)
			}
		}
		if !slices.Contains(u.words("Install", "WantedBy"), "multi-user.target") {
			t.Errorf("%s: not wanted by multi-user.target", path)
		}

		// Stopping: SIGTERM, then SHUTDOWN_TIMEOUT to drain and the
		// teardown to close, all within TimeoutStopSec.
		if sig := u.one(t, "Service", "KillSignal"); sig != "SIGTERM" {
			t.Errorf("%s: KillSignal=%s, want SIGTERM (the processes drain on it)", path, sig)
		}
		drain, err := time.ParseDuration(env["SHUTDOWN_TIMEOUT"])
		if err != nil {
			t.Errorf("%s: SHUTDOWN_TIMEOUT %q: %v", path, env["SHUTDOWN_TIMEOUT"], err)
		}
		stop := u.one(t, "Service", "TimeoutStopSec")
		if strings.Trim(stop, "0123456789") == "" {
			stop += "s" // plain seconds
		}
		limit, err := time.ParseDuration(stop)
		if err != nil {
			t.Errorf("%s: TimeoutStopSec=%s: %v", path, stop, err)
		}
		if need := drain + teardown(t, prog); limit < need {
			t.Errorf("%s: TimeoutStopSec %v, below SHUTDOWN_TIMEOUT %v plus the teardown: want at least %v", path, limit, drain, need)
		}
		if r := u.one(t, "Service", "Restart"); r != "on-failure" {
			t.Errorf("%s: Restart=%s, want on-failure", path, r)
		}

		if user := u.one(t, "Service", "User"); user == "" || user == "root" || user == "0" {
			t.Errorf("%s: User=%q, want a dedicated user", path, user)
		}
		for key, want := range map[string]string{
			"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
			"ProtectHome": "yes", "CapabilityBoundingSet": "",
		} {
			if got := u.one(t, "Service", key); got != want {
				t.Errorf("%s: %s=%q, want %q", path, key, got, want)
			}
		}
		// The only path a process writes is the worker's tenant storage.
		rw := u.words("Service", "ReadWritePaths")
		switch prog {
		case "gateway":
			if len(rw) > 0 {
				t.Errorf("%s: ReadWritePaths %v: the gateway writes nothing", path, rw)
			}
			if !bytes.Contains(prom, []byte(`"`+env["METRICS_ADDR"]+`"`)) {
				t.Errorf("%s: METRICS_ADDR %s is no target of prometheus/prometheus.yml", path, env["METRICS_ADDR"])
			}
		case "worker":
			root := env["STORAGE_ROOT"]
			if !strings.HasPrefix(root, "/") || !slices.Equal(rw, []string{root}) {
				t.Errorf("%s: ReadWritePaths %v, want only STORAGE_ROOT %q", path, rw, root)
			}
			if !slices.Contains(u.words("Unit", "RequiresMountsFor"), root) {
				t.Errorf("%s: does not wait for the mount of STORAGE_ROOT %s", path, root)
			}
			// A template: each instance its own admin port, instances 1
			// and 2 the worker targets Prometheus scrapes.
			for _, i := range []string{"1", "2"} {
				addr := strings.ReplaceAll(env["METRICS_ADDR"], "%i", i)
				if !strings.Contains(env["METRICS_ADDR"], "%i") || !bytes.Contains(prom, []byte(`"`+addr+`"`)) {
					t.Errorf("%s: METRICS_ADDR %s of instance %s is no target of prometheus/prometheus.yml", path, env["METRICS_ADDR"], i)
				}
			}
		}
	}
}
