package kvtest

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the repository's root directory: the nearest parent of
// the working directory holding tools/go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("kvtest: repository root not found")
		}
		dir = parent
	}
}

// SharedDir returns the shared/ folder beside the repository, where the
// recorded Fastly traffic lives; tests read it in place.
func SharedDir(tb testing.TB) string {
	tb.Helper()
	shared := filepath.Join(filepath.Dir(RepoRoot(tb)), "shared")
	if _, err := os.Stat(shared); err != nil {
		tb.Fatalf("kvtest: shared folder not found beside the repository at %s", shared)
	}
	return shared
}
