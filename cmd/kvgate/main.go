// Command kvgate serves Fastly KV Store items as a typed RPC API over gRPC,
// gRPC-Web and Connect on one port. With FASTLY_API_TOKEN set it calls
// Fastly; without, it runs an embedded Fastly-compatible local store.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvgate/kvgate/internal/app"
)

func main() {
	fs := flag.NewFlagSet("kvgate", flag.ExitOnError)
	cfg, logFormat, err := app.Flags(fs, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvgate:", err)
		os.Exit(2)
	}
	_ = fs.Parse(os.Args[1:])
	logger, err := app.NewLogger(*logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvgate:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, *cfg, logger); err != nil {
		logger.Error("kvgate stopped", "err", err)
		os.Exit(1)
	}
}
