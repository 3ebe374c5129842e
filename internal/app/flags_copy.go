package app

import (
	"flag"

	"github.com/kvgate/kvgate/service"
)

// registerCopyFlags registers the flags of CopyItems.
func registerCopyFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	fs.IntVar(&cfg.CopyConcurrency, "copy-concurrency", int(env.int("KVGATE_COPY_CONCURRENCY", service.DefaultCopyConcurrency)),
		"GETs one CopyItems call keeps in flight on its source store; 0 takes the default (env KVGATE_COPY_CONCURRENCY)")
}
