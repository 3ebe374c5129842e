// Command kvctl is kvgate's command-line client; see internal/kvctl and
// the README's "kvctl" section.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvgate/kvgate/internal/kvctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := kvctl.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
