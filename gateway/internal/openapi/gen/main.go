// Command gen writes openapi.json, the OpenAPI document of package openapi,
// from the registry: `go generate ./gateway/internal/openapi` or `make openapi`.
package main

import (
	"fmt"
	"os"

	"github.com/oneoffice/provisioner/gateway/internal/openapi"
)

func main() {
	b, err := openapi.Build()
	if err == nil {
		err = os.WriteFile("openapi.json", b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapi:", err)
		os.Exit(1)
	}
}
