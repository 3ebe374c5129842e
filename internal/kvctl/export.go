package kvctl

import (
	"bufio"
	"io"
	"os"

	"connectrpc.com/connect/v2"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
)

func (c *cli) exportCommand() *cobra.Command {
	var prefix, output string
	var workers int
	cmd := &cobra.Command{
		Use:   "export -s STORE [--prefix PREFIX] [-o FILE]",
		Short: "write items as NDJSON in Fastly's batch format, in key order (stdout unless -o)",
		Long: "export writes one {\"key\",\"value\"(base64),\"metadata\"} line per item, in key\n" +
			"order, the format Fastly's batch endpoint and kvctl import accept. TTLs are not\n" +
			"exported: kvgate cannot read them. With --json a summary goes to stdout when -o\n" +
			"is given, else to stderr.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if workers < 1 {
				return usagef("--concurrency must be at least 1")
			}
			var w io.Writer = c.stdout
			if output != "" {
				f, err := os.Create(output)
				if err != nil {
					return localError{err}
				}
				defer f.Close()
				w = f
			}
			bw := bufio.NewWriterSize(w, 64<<10)
			sum, err := c.export(cmd, prefix, workers, bw)
			if ferr := bw.Flush(); err == nil && ferr != nil {
				err = localError{ferr}
			}
			if err != nil {
				return err
			}
			if c.json {
				out := c.stderr
				if output != "" {
					out = c.stdout
				}
				c.printJSONTo(out, sum)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only keys that begin with this")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	cmd.Flags().IntVar(&workers, "concurrency", 8, "items read at once")
	return cmd
}

type exportSummary struct {
	Exported int   `json:"exported"`
	Bytes    int64 `json:"bytes"`
	Vanished int   `json:"vanished"` // listed, then deleted before it was read
}

// fetched is one item being read; done closes when item or err is set.
type fetched struct {
	done chan struct{}
	item *kvv1.Item
	err  error
}

// export reads the keys under prefix with up to workers reads in flight
// and writes them in key order.
func (c *cli) export(cmd *cobra.Command, prefix string, workers int, w io.Writer) (exportSummary, error) {
	var sum exportSummary
	bar := c.progress(-1, "exporting")
	defer bar.finish()
	g, ctx := errgroup.WithContext(cmd.Context())
	queue := make(chan *fetched, workers)
	sem := make(chan struct{}, workers)
	g.Go(func() error {
		defer close(queue)
		return c.streamKeys(cmd, prefix, func(key string) error {
			f := &fetched{done: make(chan struct{})}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			go func() {
				defer func() { <-sem }()
				defer close(f.done)
				res, err := c.client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: c.store, Key: key})
				f.item, f.err = res.GetItem(), err
			}()
			select {
			case queue <- f:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	})
	g.Go(func() error {
		var line []byte
		for f := range queue {
			<-f.done
			switch {
			case connect.CodeOf(f.err) == connect.CodeNotFound:
				sum.Vanished++
				continue
			case f.err != nil:
				return f.err
			}
			it := f.item
			line = upstream.AppendBatchLine(line[:0], upstream.BatchLine{Key: it.GetKey(), Value: it.GetValue(), Metadata: it.GetMetadata()})
			if _, err := w.Write(line); err != nil {
				return localError{err}
			}
			sum.Exported++
			sum.Bytes += int64(len(it.GetValue()))
			bar.add(1, 0)
		}
		return nil
	})
	err := g.Wait()
	// Readers still in flight after a failure see the cancelled context.
	for range workers {
		sem <- struct{}{}
	}
	return sum, err
}
