// Command kvlocal serves kvgate's local store on its own: a Fastly-
// compatible KV Store REST API (/resources/stores/kv/...) that any Fastly
// client can be pointed at, for example with FASTLY_API_URL.
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
	fs := flag.NewFlagSet("kvlocal", flag.ExitOnError)
	cfg, logFormat, err := app.Flags(fs, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvlocal:", err)
		os.Exit(2)
	}
	if os.Getenv("KVGATE_LISTEN") == "" {
		// Beside a kvgate on its default 8080.
		_ = fs.Set("listen", "127.0.0.1:8081")
	}
	_ = fs.Parse(os.Args[1:])
	logger, err := app.NewLogger(*logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvlocal:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.RunLocalStore(ctx, cfg.Listen, *cfg, logger); err != nil {
		logger.Error("kvlocal stopped", "err", err)
		os.Exit(1)
	}
}
