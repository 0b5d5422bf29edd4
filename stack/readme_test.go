package stack_test

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeProgram checks that the README's library program is
// Example_twoStacks (which go test runs) with only the package name, the
// function name and the Output comment changed, so the README's program
// compiles and prints what the example checks.
func TestReadmeProgram(t *testing.T) {
	ex, err := os.ReadFile("readme_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	prog := strings.NewReplacer(
		"package stack_test\n", "package main\n",
		"func Example_twoStacks() {\n", "func main() {\n",
		"\t// Output: hello from 198.18.0.2:80\n", "",
	).Replace(string(ex))
	if !strings.Contains(string(readme), "```go\n"+prog+"```\n") {
		t.Errorf("README.md's library program is not stack/readme_example_test.go with package main and func main; update one from the other")
	}
	// Every other Go block in the README must be a copy of an example too;
	// there are none today, and a new one would need a check like this.
	if n := strings.Count(string(readme), "```go\n"); n != 1 {
		t.Errorf("README.md has %d Go blocks; only the library program is checked", n)
	}
}
