package app

import (
	"flag"
	"strconv"
)

// registerWebFlags registers the flag that serves the browser app at / on
// kvgate's port.
func registerWebFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	fs.BoolVar(&cfg.WebApp, "web", parseEnv(env, "KVGATE_WEB", true, strconv.ParseBool),
		"serve the browser app at / on kvgate's port (env KVGATE_WEB)")
}
