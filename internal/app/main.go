package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Main is the body of a binary's main: it reads flags and environment,
// runs run until SIGINT or SIGTERM, and exits non-zero on failure.
// defaultListen replaces the -listen default when KVGATE_LISTEN is unset.
func Main(name, defaultListen string, run func(context.Context, Config, *slog.Logger) error) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	cfg, logFormat, err := Flags(fs, os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	if defaultListen != "" && os.Getenv("KVGATE_LISTEN") == "" {
		_ = fs.Set("listen", defaultListen)
	}
	_ = fs.Parse(os.Args[1:])
	logger, err := NewLogger(*logFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cfg, logger); err != nil {
		logger.Error(name+" stopped", "err", err)
		stop()
		os.Exit(1)
	}
}
