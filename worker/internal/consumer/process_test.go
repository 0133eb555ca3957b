package consumer

import (
	"fmt"
	"testing"
)

// storageFailure is a failure that names its dependency, as the tenant
// storage's does.
type storageFailure struct{}

func (storageFailure) Error() string      { return "disk full" }
func (storageFailure) Dependency() string { return "storage" }

func TestRetriesNameTheFailingDependency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errFlaky, "database"},
		{fmt.Errorf("create: %w", storageFailure{}), "storage"},
	} {
		if got := dependencyOf(tc.err); got != tc.want {
			t.Errorf("dependencyOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
