package telemetry_test

import (
	"log/slog"

	"github.com/kvgate/kvgate/internal/app"
)

func parseLevel(s string) (slog.Level, error) { return app.ParseRPCLogLevel(s) }
