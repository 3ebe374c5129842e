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

// Main is the body of a binary's main: it registers the binary's flags
// with flags (GatewayFlags or LocalStoreFlags), reads them and the
// environment, runs run until SIGINT or SIGTERM, and exits non-zero on
// failure.
func Main(name string,
	flags func(*flag.FlagSet, func(string) string) (*Config, error),
	run func(context.Context, Config, *slog.Logger) error,
) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	cfg, err := flags(fs, os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	_ = fs.Parse(os.Args[1:])
	logger, flush, err := NewLogger(cfg.LogFormat, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, *cfg, logger)
	stop()
	if err != nil {
		logger.Error(name+" stopped", "err", err) // an error: written at once
		os.Exit(1)
	}
	_ = flush()
}
