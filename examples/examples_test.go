// Package examples_test runs the example clients for real against a kvgate
// stack: the Go one with `go run`, the TypeScript one bundled by esbuild and
// run by node, which also type-checks with tsc. The TypeScript tests need
// node_modules (npm ci): without it they skip locally and fail under CI.
package examples_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
)

// cmdTimeout bounds each subprocess: generous, since `go run` may compile
// and tsc loads the whole program.
const cmdTimeout = 5 * time.Minute

// TestGoExample runs examples/goclient against a fresh stack.
func TestGoExample(t *testing.T) {
	t.Parallel()
	root := kvtest.RepoRoot(t)
	st := kvtest.Start(t, kvtest.Options{})

	t.Run("ok", func(t *testing.T) {
		res := run(t, root, nil, "go", "run", "./examples/goclient", "-addr", st.URL, "-store", "demo")
		res.requireSuccess(t)
		checkOutput(t, st, "demo", res)
	})
	t.Run("error", func(t *testing.T) {
		// An invalid store id is refused by kvgate before anything is sent
		// upstream; the example must say so on stderr and exit 1.
		res := run(t, root, nil, "go", "run", "./examples/goclient", "-addr", st.URL, "-store", "bad store")
		checkFailure(t, res, "error: code=invalid_argument: ")
	})
}

// TestTSExample runs the README's TypeScript commands (bundle
// examples/ts/main.ts with esbuild, run it with node) against a fresh
// stack, with the bundle in a temporary folder and the stack's URL.
func TestTSExample(t *testing.T) {
	t.Parallel()
	root := kvtest.RepoRoot(t)
	requireNode(t, root, "esbuild")
	st := kvtest.Start(t, kvtest.Options{})

	bundle := filepath.Join(t.TempDir(), "example.mjs")
	bundleCmd, runCmd := readmeTSCommands(t, root, bundle, st.URL)
	run(t, root, nil, "bash", "-c", bundleCmd).requireSuccess(t)

	t.Run("ok", func(t *testing.T) {
		// KVGATE_STORE is left to its default, "demo".
		res := run(t, root, []string{"KVGATE_URL=" + st.URL, "KVGATE_STORE="}, "node", bundle)
		res.requireSuccess(t)
		checkOutput(t, st, "demo", res)
	})
	t.Run("argv", func(t *testing.T) {
		// Without KVGATE_URL the first argument is the base URL: the
		// README's command.
		res := run(t, root, []string{"KVGATE_URL=", "KVGATE_STORE=argv-store"}, "bash", "-c", runCmd)
		res.requireSuccess(t)
		checkOutput(t, st, "argv-store", res)
	})
	t.Run("error", func(t *testing.T) {
		res := run(t, root, []string{"KVGATE_URL=" + st.URL, "KVGATE_STORE=bad store"}, "node", bundle)
		checkFailure(t, res, "error: code=invalid_argument: ")
	})
}

// TestTSTypeCheck type-checks gen/ts and examples/ts with tsconfig.json.
func TestTSTypeCheck(t *testing.T) {
	t.Parallel()
	root := kvtest.RepoRoot(t)
	requireNode(t, root, "tsc")
	run(t, root, nil, filepath.Join(root, "node_modules", ".bin", "tsc"), "-p", "tsconfig.json").requireSuccess(t)
}

var generationLine = regexp.MustCompile(`(?m)^generation: ([0-9]+)$`)

// checkOutput checks the lines both examples print on success and that the
// item they report is the one the stack now holds in store.
func checkOutput(t *testing.T, st *kvtest.Stack, store string, res result) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	want := []string{
		"key: greeting",
		"value: hello",
		`metadata: {"lang":"en"}`,
		"", // generation, checked below
		"keys: greeting",
		"missing: not_found",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines of stdout, want %d\n%s", len(lines), len(want), res)
	}
	for i, w := range want {
		if w != "" && lines[i] != w {
			t.Errorf("stdout line %d = %q, want %q", i+1, lines[i], w)
		}
	}
	m := generationLine.FindStringSubmatch(lines[3])
	if m == nil {
		t.Fatalf("stdout line 4 = %q, want generation: <digits>\n%s", lines[3], res)
	}
	gen, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		t.Fatalf("generation %q: %v", m[1], err)
	}

	// The example wrote to this stack, not somewhere else: read the item
	// back directly.
	resp, err := st.NewClient(http.DefaultClient).GetItem(t.Context(), &kvv1.GetItemRequest{StoreId: store, Key: "greeting"})
	if err != nil {
		t.Fatalf("reading the item back: %v", err)
	}
	item := resp.GetItem()
	if string(item.GetValue()) != "hello" || item.GetMetadata() != `{"lang":"en"}` || item.GetGeneration() != gen {
		t.Errorf("stored item = value %q, metadata %q, generation %d; want hello, {\"lang\":\"en\"}, %d",
			item.GetValue(), item.GetMetadata(), item.GetGeneration(), gen)
	}
	if t.Failed() {
		t.Logf("output:\n%s", res)
	}
}

// checkFailure checks that a run exited 1 with stderr starting with prefix.
func checkFailure(t *testing.T, res result, prefix string) {
	t.Helper()
	var exit *exec.ExitError
	if !errors.As(res.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("%s: got %v, want exit status 1\n%s", res.cmd, res.err, res)
	}
	if !strings.HasPrefix(res.stderr, prefix) {
		t.Errorf("%s: stderr does not start with %q\n%s", res.cmd, prefix, res)
	}
	if strings.Contains(res.stdout, "key: ") {
		t.Errorf("%s: printed an item despite failing\n%s", res.cmd, res)
	}
}

// requireNode makes sure node and node_modules/.bin/<bin> are present:
// without them the test skips, unless CI is set (CI runs npm ci first).
func requireNode(t *testing.T, root, bin string) {
	t.Helper()
	var missing error
	if _, err := os.Stat(filepath.Join(root, "node_modules", ".bin", bin)); err != nil {
		missing = fmt.Errorf("node_modules/.bin/%s is missing; run npm ci in %s: %w", bin, root, err)
	} else if _, err := exec.LookPath("node"); err != nil {
		missing = fmt.Errorf("node not found: %w", err)
	}
	if missing == nil {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skip(missing)
	}
	t.Fatal(missing)
}

// result is one finished subprocess.
type result struct {
	cmd            string
	stdout, stderr string
	combined       string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("$ %s\n%s(%v)", r.cmd, r.combined, r.err)
}

// requireSuccess fails the test, showing the combined output, unless the
// subprocess exited 0.
func (r result) requireSuccess(t *testing.T) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s failed: %v\n%s", r.cmd, r.err, r)
	}
}

// run runs name with args in dir, with env added to the test's environment,
// and returns what it printed. It never fails the test itself.
func run(t *testing.T, dir string, env []string, name string, args ...string) result {
	t.Helper()
	timeout := cmdTimeout
	if deadline, ok := t.Deadline(); ok {
		// Leave the test binary time to report before go test kills it.
		timeout = min(timeout, time.Until(deadline)-10*time.Second)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	// `go run` starts the program as a grandchild that the context does not
	// kill; WaitDelay stops Wait from hanging on its open pipes.
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	combined := &testutil.LockedBuffer{}
	cmd.Stdout = io.MultiWriter(&stdout, combined)
	cmd.Stderr = io.MultiWriter(&stderr, combined)
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w after %v)", err, ctx.Err(), timeout)
	}
	return result{
		cmd:      strings.Join(append([]string{name}, args...), " "),
		stdout:   stdout.String(),
		stderr:   stderr.String(),
		combined: combined.String(),
		err:      err,
	}
}
