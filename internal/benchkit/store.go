package benchkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// The benchmark commands run the local store in a child process, so that
// the heap and CPU of the process they measure are kvgate's and its
// clients' alone: the command re-executes itself with -serve-store and
// -latency, and the child calls ServeStore.

// ServeStore serves an in-memory local store that answers after latency
// on a loopback port, prints its address on stdout, and serves until its
// parent closes stdin or ctx ends.
func ServeStore(ctx context.Context, latency time.Duration) error {
	store, err := localstore.Open(localstore.Config{})
	if err != nil {
		return err
	}
	defer store.Close()
	store.SetFaults(localstore.Faults{Latency: latency})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return httpserver.Run(ctx, nil, ln, store.Handler())
}

// StartStore starts the local store in a child process (this executable
// with -serve-store -latency latency), and returns its base URL and how
// to stop it.
func StartStore(ctx context.Context, latency time.Duration) (url string, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	child := exec.CommandContext(ctx, self, "-serve-store", "-latency", latency.String())
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := child.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		stdin.Close()
		_ = child.Wait()
	}
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("local store did not start: %w", err)
	}
	return "http://" + strings.TrimSpace(addr), stop, nil
}
