// Package polyglot_test calls kvgate from other languages' own RPC
// stacks, started on the real server: Node through
// @connectrpc/connect-node (client.test.mjs, run by node --test) and
// Python through grpcio with stubs that Debian's protoc generates from
// proto/ at test time (kvgate_test.py, run by unittest). Without the tools
// a test skips, unless CI is set: then it fails (make deps installs them).
package polyglot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/testutil"
)

// requireFiles skips the test when one of paths is missing, or fails it
// when CI is set.
func requireFiles(t *testing.T, why string, paths ...string) {
	t.Helper()
	var missing []error
	for _, path := range paths {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, err)
		}
	}
	err := errors.Join(missing...)
	if err == nil {
		return
	}
	err = fmt.Errorf("%s (make deps installs them): %w", why, err)
	if os.Getenv("CI") == "" {
		t.Skip(err)
	}
	t.Fatal(err)
}

// run runs name with args in dir, with env added to the test's
// environment, and fails the test with everything it printed unless it
// exits 0.
func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	timeout := 2 * time.Minute
	if deadline, ok := t.Deadline(); ok {
		// Leave the test binary time to report before go test kills it.
		timeout = min(timeout, time.Until(deadline)-10*time.Second)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	out := &testutil.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	t.Logf("$ %s\n%s", cmd, out)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
}
