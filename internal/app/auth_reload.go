package app

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvgate/kvgate/internal/auth"
)

// reloadTokensOnHangup reloads gw's token file on every SIGHUP until the
// returned function is called. Without a token file SIGHUP keeps its
// default meaning.
func reloadTokensOnHangup(gw *Gateway, cfg auth.Config, logger *slog.Logger) (stop func()) {
	if cfg.TokensFile == "" {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range hup {
			logger.Info("SIGHUP: reloading the token file")
			// A failure is logged by the reload and keeps the tokens in use.
			_ = gw.ReloadTokens()
		}
	}()
	return func() {
		signal.Stop(hup)
		close(hup)
		<-done
	}
}
