package hopbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// proc is a child process of the benchmark: the binary re-executed in one
// of the roles.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// exited is closed once the process has exited; err is then its
	// outcome.
	exited chan struct{}
	err    error
	// cpu reads the process's CPU time; nil when it cannot be read.
	cpu       func() (time.Duration, error)
	cpuSource string
}

// startProc re-executes this binary in role with args and the extra
// environment env, its working directory dir. Its standard output is
// returned for the role's address lines; stderr is where its own goes.
func startProc(role string, args, env []string, dir string, stderr io.Writer) (*proc, *bufio.Reader, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(childEnviron(), append(env, RoleEnv+"="+role)...)
	cmd.Dir = dir
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting the %s: %w", role, err)
	}
	p := &proc{name: role, cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if read, source, err := cpuReader(cmd.Process.Pid); err == nil {
		p.cpu, p.cpuSource = read, source
	}
	return p, bufio.NewReader(stdout), nil
}

// childEnviron is this process's environment without the variables that
// would configure kvgate (KVGATE_*, FASTLY_*, OTEL_*) or pick a role:
// every child starts from its defaults, and kvgate from the flags the
// benchmark gives it.
func childEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "KVGATE_"), strings.HasPrefix(name, "FASTLY_"),
			strings.HasPrefix(name, "OTEL_"), name == RoleEnv:
			continue
		}
		env = append(env, kv)
	}
	return env
}

// pid is the process id, for the progress log.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// readLines reads n address lines from a role's standard output.
func (p *proc) readLines(stdout *bufio.Reader, n int) ([]string, error) {
	lines := make([]string, 0, n)
	for range n {
		line, err := stdout.ReadString('\n')
		if err != nil {
			<-p.exited
			return nil, fmt.Errorf("the %s did not start: %v (%w)", p.name, p.err, err)
		}
		lines = append(lines, strings.TrimSpace(line))
	}
	return lines, nil
}

// stop closes the process's standard input, which tells it to shut down,
// and waits for it to exit; after timeout it kills it.
func (p *proc) stop(timeout time.Duration) error {
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("the %s did not stop within %v: killed", p.name, timeout)
	}
	var exitErr *exec.ExitError
	if errors.As(p.err, &exitErr) {
		return fmt.Errorf("the %s: %w", p.name, p.err)
	}
	return nil
}

// processes are the store, the proxies and kvgate, running.
type processes struct {
	dir string

	store    *proc
	storeURL string

	proxy                           *proc
	proxyURL, pooledURL, proxyAdmin string

	kvgate      *proc
	kvgateURL   string
	kvgateAdmin string // empty without an admin listener
	kvgateLog   string

	// selfCPU reads this process's CPU time; nil when it cannot.
	selfCPU func() (time.Duration, error)
}

// othersCPU returns a function reading the CPU time the machine has spent
// on anything but the benchmark's four processes; nil where either cannot
// be read.
func (ps *processes) othersCPU() func() (time.Duration, error) {
	ours := []func() (time.Duration, error){ps.selfCPU, ps.store.cpu, ps.proxy.cpu, ps.kvgate.cpu}
	for _, read := range ours {
		if read == nil {
			return nil
		}
	}
	if _, err := machineBusy(); err != nil {
		return nil
	}
	return func() (time.Duration, error) {
		busy, err := machineBusy()
		if err != nil {
			return 0, err
		}
		for _, read := range ours {
			d, err := read()
			if err != nil {
				return 0, err
			}
			busy -= d
		}
		return busy, nil
	}
}

// startProcesses starts the store, then the proxies and kvgate in front
// of it. log receives the pids and addresses.
func startProcesses(ctx context.Context, cfg Config, log io.Writer) (_ *processes, err error) {
	dir, err := os.MkdirTemp("", "kvhop-")
	if err != nil {
		return nil, err
	}
	ps := &processes{dir: dir}
	if read, _, err := cpuReader(os.Getpid()); err == nil {
		ps.selfCPU = read
	}
	defer func() {
		if err != nil {
			_ = ps.stop()
		}
	}()

	var stdout *bufio.Reader
	if ps.store, stdout, err = startProc(roleStore, nil, nil, dir, os.Stderr); err != nil {
		return ps, err
	}
	lines, err := ps.store.readLines(stdout, 1)
	if err != nil {
		return ps, err
	}
	ps.storeURL = "http://" + lines[0]
	fmt.Fprintf(log, "kvhop: store pid %d at %s\n", ps.store.pid(), lines[0])

	conns := 0
	for _, c := range cfg.Concurrency {
		conns = max(conns, c)
	}
	args := []string{"-target", ps.storeURL, "-conns", strconv.Itoa(conns)}
	if ps.proxy, stdout, err = startProc(roleProxy, args, nil, dir, os.Stderr); err != nil {
		return ps, err
	}
	if lines, err = ps.proxy.readLines(stdout, 3); err != nil {
		return ps, err
	}
	ps.proxyURL, ps.pooledURL, ps.proxyAdmin = "http://"+lines[0], "http://"+lines[1], "http://"+lines[2]
	fmt.Fprintf(log, "kvhop: proxy pid %d: stock at %s, pooled at %s\n", ps.proxy.pid(), lines[0], lines[1])

	if err := ps.startKvgate(ctx, cfg); err != nil {
		return ps, err
	}
	fmt.Fprintf(log, "kvhop: kvgate pid %d at %s, its log in %s\n", ps.kvgate.pid(), strings.TrimPrefix(ps.kvgateURL, "http://"), ps.kvgateLog)
	return ps, nil
}

// servingAddr finds the address in kvgate's "kvgate serving" log line.
var servingAddr = regexp.MustCompile(`msg="kvgate serving".* addr=(\S+)`)

// startKvgate starts the kvgate command pointed at the store, its stderr
// (the RPC log among it) going to a file, and waits until it serves.
func (ps *processes) startKvgate(ctx context.Context, cfg Config) error {
	args := []string{"-listen", "127.0.0.1:0"}
	if cfg.Allocs || cfg.ProfileDir != "" {
		port, err := freePort()
		if err != nil {
			return err
		}
		admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args = append(args, "-admin-listen", admin, "-admin-pprof")
		ps.kvgateAdmin = "http://" + admin
	}
	args = append(args, cfg.KvgateArgs...)
	ps.kvgateLog = filepath.Join(ps.dir, "kvgate.log")
	logFile, err := os.Create(ps.kvgateLog)
	if err != nil {
		return err
	}
	defer logFile.Close()
	env := []string{"FASTLY_API_TOKEN=kvhop", "FASTLY_API_URL=" + ps.storeURL}
	var stdout io.Reader
	if ps.kvgate, stdout, err = startProc(roleKvgate, args, env, ps.dir, logFile); err != nil {
		return err
	}
	// kvgate writes nothing to stdout; should it, a full pipe must not
	// stall it.
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(ps.kvgateLog)
		if err != nil {
			return err
		}
		if m := servingAddr.FindSubmatch(b); m != nil {
			ps.kvgateURL = "http://" + string(m[1])
			return nil
		}
		select {
		case <-ps.kvgate.exited:
			return fmt.Errorf("kvgate exited before serving (%v): %s", ps.kvgate.err, tail(b, 2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kvgate did not serve within 30s: %s", tail(b, 2000))
		}
	}
}

// freePort returns a loopback port nothing listens on just now, for
// kvgate's admin listener: kvgate refuses an admin address equal to its
// public one, so both cannot be 127.0.0.1:0.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// stop stops kvgate, the proxies and the store, in that order, and
// removes the temporary directory with kvgate's log.
func (ps *processes) stop() error {
	var errs []error
	for _, p := range []*proc{ps.kvgate, ps.proxy, ps.store} {
		if p != nil {
			errs = append(errs, p.stop(10*time.Second))
		}
	}
	errs = append(errs, os.RemoveAll(ps.dir))
	return errors.Join(errs...)
}
