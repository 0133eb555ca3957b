package protocol

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The tests below fail when a method is defined without what every method
// has outside its definition and its handler (the worker checks the handler:
// TestEveryMethodHasAHandler): its section in the partners' documentation and
// its call in the end-to-end test of every method. The tables of this package
// check themselves (TestEveryMethodHasValidationCases, TestIdempotencyRules).

// TestEveryMethodHasAREADMESection keeps the partner's documentation in step
// with the registry: each method has a heading "### `name`" in README.md.
func TestEveryMethodHasAREADMESection(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Names() {
		if !strings.Contains(string(readme), "\n### `"+name+"`") {
			t.Errorf("README.md has no section \"### `%s`\"", name)
		}
	}
}

// TestEveryMethodIsCalledEndToEnd: the end-to-end test of every method
// (gateway/e2e, TestEveryMethodOverHTTP) names each method.
func TestEveryMethodIsCalledEndToEnd(t *testing.T) {
	t.Parallel()
	const file, test = "../../gateway/e2e/api_test.go", "TestEveryMethodOverHTTP"
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	found := false
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name == test {
			found = true
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					named[s] = true
				}
				return true
			})
		}
	}
	if !found {
		t.Fatalf("%s has no %s", file, test)
	}
	for _, name := range Names() {
		if !named[name] {
			t.Errorf("%s in %s never calls %s", test, file, name)
		}
	}
}
