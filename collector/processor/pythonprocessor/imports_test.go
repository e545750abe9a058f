package pythonprocessor

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The processor depends on the sidecar's contract (package sidecarapi), never on
// the extension that implements it.
func TestTheProcessorImportsTheContractNotTheExtension(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	contract := false
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range parsed.Imports {
			path, _ := strconv.Unquote(spec.Path.Value)
			if strings.HasSuffix(path, "/extension/pythonextension") {
				t.Errorf("%s imports %s: use the contract in package sidecarapi", name, path)
			}
			contract = contract || strings.HasSuffix(path, "/collector/sidecarapi")
		}
	}
	if !contract {
		t.Error("no file imports sidecarapi: did the contract move?")
	}
}
