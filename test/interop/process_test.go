//go:build unix

// Package interop checks kvgate from the outside, with clients it does not
// ship: grpc-go (through stubs generated only for these tests) and grpcurl.
// kvgate runs as a separate process because the test stubs and the
// product's generated code register the same proto file, and protobuf
// panics when one binary registers a file twice. That is also why this
// package must not import github.com/kvgate/kvgate/gen/go/... or anything
// that imports it (kvtest included).
//
// The files build on Unix only: graceful shutdown is driven by SIGTERM,
// which Windows cannot deliver to another process.
package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Generous bounds that only turn a hang into a failure; nothing asserts on
// how long kvgate takes.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
	testTimeout  = 2 * time.Minute
)

var (
	// repoRoot is the repository's root directory, found once in TestMain.
	repoRoot string
	// kvgateBin is the kvgate binary TestMain built for every test.
	kvgateBin string
	// kvlocalBin is the kvlocal binary (the local store on its own), built
	// beside kvgateBin, for tests that point kvgate at a separate store.
	kvlocalBin string
)

// TestMain builds kvgate and kvlocal once: each test starts its own
// processes, and building per test would cost more than the tests
// themselves.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := findRepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "kvgate-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	kvgateBin = filepath.Join(dir, "kvgate")
	kvlocalBin = filepath.Join(dir, "kvlocal")
	// "go test" puts its own GOROOT/bin first on PATH, so this is the same
	// toolchain that builds the tests. Without -race: the binaries behave,
	// and use memory, as they do in production.
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/kvgate", "./cmd/kvlocal")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "interop: building kvgate and kvlocal: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// findRepoRoot walks up from the working directory to the folder holding
// tools/go.mod, as kvtest.RepoRoot does; kvtest itself cannot be imported
// here because it imports the product's generated code.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (the folder holding tools/go.mod) not found above the working directory")
		}
		dir = parent
	}
}

// testContext bounds one test's RPCs and commands, so that a hung kvgate
// fails the test instead of the whole run's -timeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// kvgateProc is one running kvgate (or kvlocal) process.
type kvgateProc struct {
	// Addr is the host:port the process logged that it serves on.
	Addr string

	name   string // "kvgate" or "kvlocal", for messages
	cmd    *exec.Cmd
	log    *logWriter
	exited chan struct{} // closed once cmd.Wait returns
	err    error         // cmd.Wait's result, readable once exited is closed

	stopOnce sync.Once
}

// startKVGate starts kvgate on a free loopback port with the embedded local
// store in dataDir, waits until it logs its address, and stops it (checking
// for a clean exit) when the test ends unless the test stopped it already.
func startKVGate(t *testing.T, dataDir string) *kvgateProc {
	t.Helper()
	return startKVGateWith(t, nil, "-data", dataDir)
}

// startKVGateWith starts kvgate like startKVGate, with extra flags and
// extra environment variables (NAME=value, added to kvgateEnv's), for
// example FASTLY_API_TOKEN and FASTLY_API_URL to point it at a kvlocal.
func startKVGateWith(t *testing.T, env []string, args ...string) *kvgateProc {
	t.Helper()
	return startProc(t, "kvgate", kvgateBin, servingLine, env, args...)
}

// startKVLocal starts kvlocal (the local store alone, a Fastly-compatible
// REST server) on a free loopback port with its data in dataDir ("" keeps
// it in memory), and stops it like startKVGate's kvgate. Start it before
// the kvgate that uses it: cleanups run last-in first-out, so kvgate then
// stops first.
func startKVLocal(t *testing.T, dataDir string) *kvgateProc {
	t.Helper()
	return startProc(t, "kvlocal", kvlocalBin, localServingLine, nil, "-data", dataDir)
}

// startProc starts bin on 127.0.0.1:0 with args and env added, and waits
// until its log has a line matching ready, whose first group is the
// address.
func startProc(t *testing.T, name, bin string, ready *regexp.Regexp, env []string, args ...string) *kvgateProc {
	t.Helper()
	p := &kvgateProc{
		name:   name,
		log:    newLogWriter(ready),
		exited: make(chan struct{}),
	}
	p.cmd = exec.Command(bin, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
	p.cmd.Env = append(kvgateEnv(), env...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	// Registered before waiting for the address, so that a kvgate that
	// never becomes ready is still reaped.
	t.Cleanup(func() { p.Stop(t) })

	select {
	case addr := <-p.log.addr:
		p.Addr = addr
	case <-p.exited:
		t.Fatalf("%s exited before serving (%v); its log:\n%s", name, p.err, p.log)
	case <-time.After(startTimeout):
		t.Fatalf("%s did not log its address within %v; its log:\n%s", name, startTimeout, p.log)
	}
	return p
}

// Pid is the process id, for reading /proc/<pid>.
func (p *kvgateProc) Pid() int {
	return p.cmd.Process.Pid
}

// kvgateEnv is the test's environment without FASTLY_API_TOKEN, so kvgate
// runs the embedded local store and can never reach Fastly, and without
// KVGATE_* settings, so a developer's shell cannot change the flags'
// defaults (such as the log format the address is parsed from).
func kvgateEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "FASTLY_API_TOKEN" || name == "FASTLY_API_URL" || name == "FASTLY_API_ENDPOINT" || strings.HasPrefix(name, "KVGATE_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Stop sends SIGTERM and checks that kvgate shuts down gracefully: it exits
// with status 0 and logs "shutdown finished". Only the first call acts.
func (p *kvgateProc) Stop(t *testing.T) {
	t.Helper()
	p.stopOnce.Do(func() { p.stop(t) })
}

func (p *kvgateProc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Errorf("%s exited on its own before being stopped (%v); its log:\n%s", p.name, p.err, p.log)
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("sending SIGTERM to %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		// Kill it so the test run does not leak the process, then report.
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s did not exit within %v of SIGTERM; its log:\n%s", p.name, stopTimeout, p.log)
		return
	}
	if p.err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want status 0; its log:\n%s", p.name, p.err, p.log)
	}
	log := p.log.String()
	// The local store logs its own "shutdown finished"; only the line for
	// the address clients use shows the gateway itself drained.
	finished := false
	for line := range strings.Lines(log) {
		if strings.Contains(line, `msg="shutdown finished"`) && strings.Contains(line, " addr="+p.Addr+" ") {
			finished = true
		}
	}
	if !finished {
		t.Errorf("%s's log lacks \"shutdown finished\" for %s after SIGTERM; its log:\n%s", p.name, p.Addr, log)
	}
	// Every RPC these tests make is well-formed HTTP from real clients;
	// an ERROR line (such as a recovered handler panic) is a kvgate bug
	// even when the RPC's answer looked right.
	for line := range strings.Lines(log) {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("%s logged an error: %s", p.name, strings.TrimSpace(line))
		}
	}
	if testing.Verbose() {
		t.Logf("%s's log:\n%s", p.name, log)
	}
}

// servingLine matches kvgate's readiness line in slog's text format and
// captures the address. \b keeps it from matching store_addr= ('_' is a
// word character), which the local store's line carries.
var servingLine = regexp.MustCompile(`msg="kvgate serving" .*?\baddr=(\S+)`)

// localServingLine is kvlocal's readiness line.
var localServingLine = regexp.MustCompile(`msg="local store serving the Fastly KV REST API" .*?\baddr=(\S+)`)

// logWriter keeps everything a process writes and reports its listening
// address once the readiness line (matching ready) is complete.
type logWriter struct {
	ready   *regexp.Regexp
	mu      sync.Mutex
	buf     bytes.Buffer
	scanned int // bytes of buf already searched for whole lines
	found   bool
	addr    chan string
}

func newLogWriter(ready *regexp.Regexp) *logWriter {
	return &logWriter{ready: ready, addr: make(chan string, 1)}
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	// Only whole lines are searched: a write can end mid-line, and a
	// truncated port must never be reported.
	for !w.found {
		rest := w.buf.Bytes()[w.scanned:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		if m := w.ready.FindSubmatch(rest[:i]); m != nil {
			w.found = true
			w.addr <- string(m[1])
		}
		w.scanned += i + 1
	}
	return len(b), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
