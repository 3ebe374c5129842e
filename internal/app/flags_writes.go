package app

import (
	"errors"
	"flag"

	"github.com/kvgate/kvgate/service"
)

// WriteConfig bounds kvgate's writes to Fastly: how many DELETEs one
// DeleteKeys call keeps in flight, and kvgate's own hourly write budget.
type WriteConfig struct {
	// DeleteConcurrency is DeleteKeys' DELETEs in flight per call;
	// service.DefaultDeleteConcurrency when zero.
	DeleteConcurrency int
	// BudgetPerHour is the most non-read requests (PUT, DELETE, batch
	// PUT, retries included) kvgate sends Fastly in any rolling hour;
	// zero keeps only the budget Fastly's answers report.
	BudgetPerHour int64
}

func (c WriteConfig) validate() error {
	if c.BudgetPerHour < 0 {
		return errors.New("-write-budget must not be negative (0: only Fastly's signals)")
	}
	return nil
}

func registerWriteFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	fs.IntVar(&cfg.Writes.DeleteConcurrency, "delete-concurrency",
		int(env.int("KVGATE_DELETE_CONCURRENCY", service.DefaultDeleteConcurrency)),
		"DELETEs one DeleteKeys call keeps in flight; each spends one request of Fastly's hourly write budget (env KVGATE_DELETE_CONCURRENCY)")
	fs.Int64Var(&cfg.Writes.BudgetPerHour, "write-budget", env.int("KVGATE_WRITE_BUDGET", 0),
		"most non-read requests (PUT, DELETE, batch PUT, retries included) this kvgate sends in any rolling hour; "+
			"past it writes fail with RESOURCE_EXHAUSTED unsent. Fastly's budget is per user: give each replica its share. "+
			"0: only the budget Fastly's answers report (env KVGATE_WRITE_BUDGET)")
}
