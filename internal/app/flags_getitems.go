package app

import (
	"flag"

	"github.com/kvgate/kvgate/service"
)

func registerGetItemsFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	fs.IntVar(&cfg.GetItemsConcurrency, "get-items-concurrency",
		int(env.int("KVGATE_GET_ITEMS_CONCURRENCY", service.DefaultGetItemsConcurrency)),
		"reads one GetItems call keeps in flight, and so the most values it holds at once (env KVGATE_GET_ITEMS_CONCURRENCY)")
}
