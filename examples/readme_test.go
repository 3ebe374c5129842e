package examples_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
)

// TestREADMEGo checks that the README's Go example is, line for line, the
// part of examples/goclient/main.go between its README markers, which
// TestGoExample runs. The README indents with four spaces where gofmt
// writes tabs.
func TestREADMEGo(t *testing.T) {
	t.Parallel()
	root := kvtest.RepoRoot(t)
	want := strings.ReplaceAll(testutil.MarkedLines(t, filepath.Join(root, "examples", "goclient", "main.go"), "//", "go"), "\t", "    ")
	if got := testutil.READMEBlock(t, root, "go"); got != want {
		t.Errorf("README.md's Go example differs from examples/goclient/main.go's marked lines.\nREADME:\n%s\nmain.go:\n%s", got, want)
	}
}

// readmeTSCommands returns the README's two TypeScript commands, the
// esbuild bundling and the node run, with the bundle written to bundle
// and the example pointed at url. It fails the test when the README shows
// other commands.
func readmeTSCommands(t *testing.T, root, bundle, url string) (bundleCmd, runCmd string) {
	t.Helper()
	block := testutil.READMEBlock(t, root, "ts")
	lines := strings.Split(strings.TrimSpace(block), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "node_modules/.bin/esbuild examples/ts/main.ts ") ||
		!strings.HasPrefix(lines[1], "node dist/example.mjs ") {
		t.Fatalf("README.md's TypeScript example is not an esbuild command of examples/ts/main.ts and a node command of dist/example.mjs:\n%s", block)
	}
	r := strings.NewReplacer("dist/example.mjs", bundle, "http://127.0.0.1:8080", url)
	for _, want := range []string{"--outfile=dist/example.mjs", "http://127.0.0.1:8080"} {
		if !strings.Contains(block, want) {
			t.Fatalf("README.md's TypeScript example lacks %q, which the test replaces:\n%s", want, block)
		}
	}
	return r.Replace(lines[0]), r.Replace(lines[1])
}
