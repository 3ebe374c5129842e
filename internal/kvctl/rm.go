package kvctl

import (
	"bufio"
	"fmt"
	"strings"
	"sync"

	"connectrpc.com/connect/v2"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

// rmWorkers bounds the deletes of a prefix delete in flight.
const rmWorkers = 8

// itemFailure is one item an import or a prefix delete could not write or
// delete.
type itemFailure struct {
	Index  *uint64 `json:"index,omitempty"`
	Line   int     `json:"line,omitempty"`
	Key    string  `json:"key"`
	Code   string  `json:"code"`
	Reason string  `json:"reason"`
}

func (c *cli) rmCommand() *cobra.Command {
	var prefix string
	var dryRun, yes, force, all bool
	var ifGen uint64
	cmd := &cobra.Command{
		Use:   "rm -s STORE KEY | rm -s STORE --prefix PREFIX [--dry-run] [--yes]",
		Short: "delete one item, or every item under --prefix",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			byPrefix := cmd.Flags().Changed("prefix") || all
			switch {
			case byPrefix && len(args) == 1:
				return usagef("give a KEY or --prefix, not both")
			case !byPrefix && len(args) == 0:
				return usagef("give a KEY, or --prefix (--all for every key)")
			case byPrefix && prefix == "" && !all:
				return usagef("an empty --prefix deletes every key: say --all")
			case !byPrefix && dryRun:
				return usagef("--dry-run goes with --prefix")
			}
			if byPrefix {
				return c.rmPrefix(cmd, prefix, dryRun, yes)
			}
			req := &kvv1.DeleteItemRequest{StoreId: c.store, Key: args[0], Force: force}
			if cmd.Flags().Changed("if-generation") {
				req.IfGenerationMatch = &ifGen
			}
			if _, err := c.client.DeleteItem(cmd.Context(), req); err != nil {
				return err
			}
			if c.json {
				c.printJSON(map[string]any{"key": req.Key, "deleted": true})
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", "", "delete every key that begins with this")
	f.BoolVar(&all, "all", false, "delete every key of the store")
	f.BoolVar(&dryRun, "dry-run", false, "with --prefix: list what would be deleted, delete nothing")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation on a terminal")
	f.BoolVar(&force, "force", false, "succeed when the key does not exist")
	f.Uint64Var(&ifGen, "if-generation", 0, "delete only if the item's generation is this one")
	return cmd
}

// rmPrefix deletes every key under prefix as StreamKeys delivers them.
func (c *cli) rmPrefix(cmd *cobra.Command, prefix string, dryRun, yes bool) error {
	if !dryRun && !yes && isTerminal(c.stdin) && isTerminal(c.stderr) {
		fmt.Fprintf(c.stderr, "Delete every key under %q in store %s? [y/N] ", prefix, c.store)
		answer, _ := bufio.NewReader(c.stdin).ReadString('\n')
		if a := strings.TrimSpace(strings.ToLower(answer)); a != "y" && a != "yes" {
			return usagef("not confirmed; nothing deleted")
		}
	}
	bar := c.progress(-1, "deleting")
	var mu sync.Mutex
	var keys []string
	var failures []itemFailure
	deleted := 0
	g, ctx := errgroup.WithContext(cmd.Context())
	g.SetLimit(rmWorkers + 1)
	g.Go(func() error {
		return c.streamKeys(cmd, prefix, func(key string) error {
			if dryRun {
				keys = append(keys, key)
				if !c.json {
					fmt.Fprintln(c.stdout, key)
				}
				return nil
			}
			g.Go(func() error {
				_, err := c.client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: c.store, Key: key, Force: true})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failures = append(failures, itemFailure{Key: key, Code: connect.CodeOf(err).String(), Reason: err.Error()})
					fmt.Fprintf(c.stderr, "kvctl: rm %s: %v\n", key, err)
					return nil
				}
				deleted++
				bar.add(1, 0)
				return nil
			})
			return nil
		})
	})
	err := g.Wait()
	bar.finish()
	if err != nil {
		return err
	}
	if c.json {
		out := map[string]any{"prefix": prefix, "dry_run": dryRun, "deleted": deleted, "failures": nonNil(failures)}
		if dryRun {
			out["keys"] = nonNil(keys)
		}
		c.printJSON(out)
	} else if !dryRun {
		fmt.Fprintf(c.stderr, "deleted %d keys\n", deleted)
	}
	if len(failures) > 0 {
		return partialError{len(failures)}
	}
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// progress is a progress bar on stderr when stderr is a terminal, and
// nothing otherwise.
type progress struct {
	bar   *progressbar.ProgressBar
	items int64
	verb  string
}

// progress starts a bar counting bytes toward total (-1 when unknown).
func (c *cli) progress(total int64, verb string) *progress {
	p := &progress{verb: verb}
	if !isTerminal(c.stderr) {
		return p
	}
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(c.stderr),
		progressbar.OptionSetDescription(verb),
		progressbar.OptionShowBytes(total >= 0),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionClearOnFinish(),
	)
	return p
}

// add counts items and bytes done.
func (p *progress) add(items, bytes int) {
	if p.bar == nil {
		return
	}
	p.items += int64(items)
	p.bar.Describe(fmt.Sprintf("%s %d items", p.verb, p.items))
	if bytes > 0 {
		_ = p.bar.Add(bytes)
	} else {
		_ = p.bar.Add(items)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
