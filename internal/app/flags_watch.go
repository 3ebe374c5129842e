package app

import (
	"flag"

	"github.com/kvgate/kvgate/service"
)

// registerWatchFlags registers the flags that bound WatchItems' polling.
func registerWatchFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	fs.DurationVar(&cfg.Watch.MinInterval, "watch-min-interval", env.duration("KVGATE_WATCH_MIN_INTERVAL", service.DefaultWatchMinInterval),
		"shortest poll interval of WatchItems: watches asking for less are polled this often (env KVGATE_WATCH_MIN_INTERVAL)")
	fs.IntVar(&cfg.Watch.MaxKeys, "watch-max-keys", int(env.int("KVGATE_WATCH_MAX_KEYS", service.DefaultWatchMaxKeys)),
		"most keys a WatchItems prefix watch may cover; a prefix holding more ends its watches with FAILED_PRECONDITION (env KVGATE_WATCH_MAX_KEYS)")
}
