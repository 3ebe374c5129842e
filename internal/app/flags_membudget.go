package app

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/kvgate/kvgate/internal/membudget"
)

// MemoryBudgetConfig bounds the bytes kvgate holds for values in flight
// across all RPCs; see package membudget.
type MemoryBudgetConfig struct {
	// Bytes is the budget; when zero it is derived from the machine, as
	// [membudget.Default] describes.
	Bytes int64
}

// budget returns the budget for a largest value of maxValue bytes.
func (c MemoryBudgetConfig) budget(maxValue int64) *membudget.Budget {
	n := c.Bytes
	if n <= 0 {
		n = membudget.Default(membudget.AvailableMemory(), maxValue)
	}
	return membudget.New(n)
}

// validate refuses a budget too small for one largest value.
func (c MemoryBudgetConfig) validate(maxValue int64) error {
	if least := membudget.Minimum(maxValue); c.Bytes != 0 && c.Bytes < least {
		return fmt.Errorf("memory budget %s is too small for one value of %d bytes: it must be at least %s (twice the value plus 64KiB)",
			membudget.FormatSize(c.Bytes), maxValue, membudget.FormatSize(least))
	}
	return nil
}

// runtimeOverhead is what kvgate is allowed beside its budget when it
// sets the Go runtime's soft memory limit: code, goroutine stacks,
// connection buffers and bookkeeping.
const runtimeOverhead = 128 << 20

// limitRuntimeMemory sets the Go runtime's soft memory limit to the
// budget plus runtimeOverhead, so that the garbage collector returns the
// budget's freed values before the heap grows past it, unless the
// operator chose a limit with GOMEMLIMIT.
func limitRuntimeMemory(b *membudget.Budget, logger *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := b.Size() + runtimeOverhead
	debug.SetMemoryLimit(limit)
	logger.Info("memory budget for values in flight",
		"budget", membudget.FormatSize(b.Size()), "go_memory_limit", membudget.FormatSize(limit))
}

func registerMemoryBudgetFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	cfg.MemoryBudget.Bytes = parseEnv(env, "KVGATE_MEMORY_BUDGET", 0, membudget.ParseSize)
	fs.Func("memory-budget", fmt.Sprintf("bytes held for values in flight across all RPCs, e.g. 512MiB (KiB, MiB, GiB, TiB or plain bytes); "+
		"callers wait for it, and fail with RESOURCE_EXHAUSTED when none comes free before their deadline. "+
		"Default: 1/%d of the cgroup's memory limit or of the machine's memory, within %s..%s and at least twice the largest value "+
		"(env KVGATE_MEMORY_BUDGET)", membudget.DefaultFraction, membudget.FormatSize(membudget.DefaultFloor), membudget.FormatSize(membudget.DefaultCap)),
		func(v string) error {
			n, err := membudget.ParseSize(v)
			cfg.MemoryBudget.Bytes = n
			return err
		})
}
