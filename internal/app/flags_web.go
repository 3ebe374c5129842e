package app

import (
	"flag"
)

// registerWebFlags registers the flag that serves the browser app at / on
// kvgate's port.
func registerWebFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	fs.BoolVar(&cfg.WebApp, "web", env.bool("KVGATE_WEB", true),
		"serve the browser app at / on kvgate's port (env KVGATE_WEB)")
}
