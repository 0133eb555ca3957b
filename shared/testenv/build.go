package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// module is the import path of this repository's module.
const module = "github.com/oneoffice/provisioner"

// Binaries is a directory holding the gateway and worker binaries.
type Binaries struct{ Dir string }

// Gateway is the path of the gateway binary.
func (b Binaries) Gateway() string { return filepath.Join(b.Dir, "gateway") }

// Worker is the path of the worker binary.
func (b Binaries) Worker() string { return filepath.Join(b.Dir, "worker") }

// Build compiles the gateway and the worker of the module around the working
// directory into dir with go build.
func Build(ctx context.Context, dir string) (Binaries, error) {
	root, err := ModuleRoot(ctx)
	if err != nil {
		return Binaries{}, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator), module+"/gateway", module+"/worker")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("go build: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return Binaries{Dir: dir}, nil
}

// ModuleRoot is the directory of the module around the working directory:
// the repository's root.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}
