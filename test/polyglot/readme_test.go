package polyglot_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/kvtest"
)

// TestREADMEExamples checks that the README's Node and Python examples
// and its protoc command are, word for word, what TestNodeClient and
// TestPythonClient run.
func TestREADMEExamples(t *testing.T) {
	t.Parallel()
	root := kvtest.RepoRoot(t)
	readme := readFile(t, filepath.Join(root, "README.md"))
	tests := []struct {
		name, file, comment string
	}{
		{"node", "client.test.mjs", "//"},
		{"python", "kvgate_test.py", "#"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := readFile(t, filepath.Join(root, "test", "polyglot", tt.file))
			begin, end := tt.comment+" README:begin "+tt.name+"\n", tt.comment+" README:end "+tt.name+"\n"
			_, rest, ok1 := strings.Cut(src, begin)
			example, _, ok2 := strings.Cut(rest, end)
			if !ok1 || !ok2 || example == "" {
				t.Fatalf("%s has no example between %q and %q", tt.file, begin, end)
			}
			if !strings.Contains(readme, example) {
				t.Errorf("README.md does not show the example of %s, as it is there:\n%s", tt.file, example)
			}
		})
	}
	t.Run("protoc", func(t *testing.T) {
		t.Parallel()
		if !strings.Contains(readme, protocPython+"\n") {
			t.Errorf("README.md does not show the protoc command TestPythonClient runs:\n%s", protocPython)
		}
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
