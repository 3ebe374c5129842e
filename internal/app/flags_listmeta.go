package app

import (
	"flag"

	"github.com/kvgate/kvgate/service"
)

// registerListMetadataFlags registers the bound on the HEADs that ListKeys
// and StreamKeys send for include_metadata.
func registerListMetadataFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	fs.IntVar(&cfg.ListMetadataConcurrency, "list-metadata-concurrency",
		int(env.int("KVGATE_LIST_METADATA_CONCURRENCY", service.DefaultListMetadataConcurrency)),
		"HEADs one ListKeys or StreamKeys with include_metadata keeps in flight, one per listed key (env KVGATE_LIST_METADATA_CONCURRENCY)")
}
