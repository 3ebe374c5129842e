package app

import (
	"flag"
	"fmt"

	"github.com/kvgate/kvgate/service"
)

// registerCallConcurrencyFlags registers how many upstream calls one RPC
// that fans out keeps in flight: GetItems' reads, CopyItems' GETs and the
// HEADs of a listing with include_metadata (DeleteKeys' DELETEs are among
// the write flags). Zero takes the default.
func registerCallConcurrencyFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	fs.IntVar(&cfg.GetItemsConcurrency, "get-items-concurrency",
		int(env.int("KVGATE_GET_ITEMS_CONCURRENCY", service.DefaultGetItemsConcurrency)),
		"reads one GetItems call keeps in flight, and so the most values it holds at once (env KVGATE_GET_ITEMS_CONCURRENCY)")
	fs.IntVar(&cfg.CopyConcurrency, "copy-concurrency", int(env.int("KVGATE_COPY_CONCURRENCY", service.DefaultCopyConcurrency)),
		"GETs one CopyItems call keeps in flight on its source store; 0 takes the default (env KVGATE_COPY_CONCURRENCY)")
	fs.IntVar(&cfg.ListMetadataConcurrency, "list-metadata-concurrency",
		int(env.int("KVGATE_LIST_METADATA_CONCURRENCY", service.DefaultListMetadataConcurrency)),
		"HEADs one ListKeys or StreamKeys with include_metadata keeps in flight, one per listed key (env KVGATE_LIST_METADATA_CONCURRENCY)")
}

// validateCallConcurrency refuses a negative concurrency, naming its flag.
func (c *Config) validateCallConcurrency() error {
	for _, n := range []struct {
		flag  string
		value int
	}{
		{"-get-items-concurrency", c.GetItemsConcurrency},
		{"-copy-concurrency", c.CopyConcurrency},
		{"-list-metadata-concurrency", c.ListMetadataConcurrency},
		{"-delete-concurrency", c.Writes.DeleteConcurrency},
	} {
		if n.value < 0 {
			return fmt.Errorf("%s must not be negative (0 takes the default)", n.flag)
		}
	}
	return nil
}
