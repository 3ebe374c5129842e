package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Chromium is the browser the browser tests drive: Debian's package,
// which make deps installs.
const Chromium = "/usr/bin/chromium"

// RequireBrowser returns Chromium's path once it, node and the npm
// packages a browser test uses (paths under root's node_modules) are
// present. Without them the test skips, unless CI is set (CI installs them
// with make deps): then it fails.
func RequireBrowser(tb testing.TB, root string, npmPaths ...string) string {
	tb.Helper()
	var missing []error
	paths := []string{Chromium}
	for _, p := range npmPaths {
		paths = append(paths, filepath.Join(root, "node_modules", p))
	}
	for _, path := range paths {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, err)
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, err)
	}
	if err := errors.Join(missing...); err != nil {
		err = fmt.Errorf("the browser test needs chromium, node and node_modules (make deps): %w", err)
		if os.Getenv("CI") == "" {
			tb.Skip(err)
		}
		tb.Fatal(err)
	}
	return Chromium
}
