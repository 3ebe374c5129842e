package kvctl

import (
	"context"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect/v2"
	"github.com/spf13/cobra"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

// copySummary is cp's result. Items copied again after a resume (those
// past the cursor a stopped call handed back) count once per copy.
type copySummary struct {
	Copied   uint64        `json:"copied"`
	Skipped  uint64        `json:"skipped"`
	Failed   uint64        `json:"failed"`
	Failures []itemFailure `json:"failures"`
}

func (c *cli) cpCommand() *cobra.Command {
	var target, prefix, cursor string
	res := &resumer{c: c, verb: "cp"}
	cmd := &cobra.Command{
		Use:   "cp -s STORE --to TARGET [--prefix PREFIX]",
		Short: "copy items (values and metadata) into another store, server-side",
		Long: "cp copies every item under --prefix (every item without it) from -s STORE into\n" +
			"--to TARGET with CopyItems: kvgate lists, reads and batch-writes, and items under\n" +
			"the same keys in TARGET are overwritten. Copies do not expire (a read tells no\n" +
			"TTL). Progress goes to stderr, each item that failed too. A call that ends early\n" +
			"is resumed from its cursor like rm's; when it stops for good, the cursor that\n" +
			"resumes it is printed (pass it back with --cursor).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case target == "":
				return usagef("--to TARGET is required")
			case target == c.store:
				return usagef("--to must name another store than -s")
			case res.retries < 0:
				return usagef("--retries must not be negative")
			}
			again := "cp -s " + shellQuote(c.store) + " --to " + shellQuote(target)
			if prefix != "" {
				again += " --prefix " + shellQuote(prefix)
			}
			req := &kvv1.CopyItemsRequest{SourceStoreId: c.store, TargetStoreId: target, Prefix: prefix}
			return c.copyItems(cmd.Context(), req, cursor, res, again)
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "to", "", "the store to copy into")
	f.StringVar(&prefix, "prefix", "", "only items whose keys begin with this")
	f.StringVar(&cursor, "cursor", "", "resume a copy from the cursor a stopped one printed")
	res.register(cmd, defaultRetries, "times in a row a call that ended early (unavailable, rate limited) is resumed without progress; 0 never resumes")
	return cmd
}

// copyItems copies what req selects, resuming from the cursor as long as
// res allows.
func (c *cli) copyItems(ctx context.Context, req *kvv1.CopyItemsRequest, cursor string, res *resumer, again string) error {
	bar := c.progress(-1, "copying")
	sum := copySummary{Failures: []itemFailure{}}
	var err error
	for {
		req.Cursor = cursor
		var call kvv1.CopyItemsResponse // the call's totals so far
		cursor, err = c.copyOnce(ctx, req, &call, func(f *kvv1.BatchFailure) {
			sum.Failures = append(sum.Failures, itemFailure{Key: f.GetKey(), Code: f.GetCode(), Reason: f.GetReason()})
			fmt.Fprintf(c.stderr, "kvctl: cp %s: %s: %s\n", f.GetKey(), f.GetCode(), f.GetReason())
		}, bar)
		sum.Copied += call.GetCopied()
		sum.Skipped += call.GetSkipped()
		sum.Failed += call.GetFailed()
		if err == nil || !res.again(ctx, err, call.GetCopied()+call.GetSkipped()+call.GetFailed() > 0) {
			break
		}
	}
	bar.finish()
	switch {
	case c.json && err == nil:
		c.printJSON(sum)
	case !c.json:
		msg := fmt.Sprintf("copied %d items", sum.Copied)
		if sum.Skipped > 0 {
			msg += fmt.Sprintf(", %d skipped (deleted since listed)", sum.Skipped)
		}
		if sum.Failed > 0 {
			msg += fmt.Sprintf(", %d failed", sum.Failed)
		}
		if err != nil {
			msg += " before stopping"
		}
		fmt.Fprintln(c.stderr, msg)
	}
	if err != nil {
		if sum.Copied+sum.Skipped+sum.Failed == 0 && !transient(err) {
			return err
		}
		return resumeError{err: err, cursor: cursor, again: again}
	}
	if sum.Failed > 0 {
		return partialError{int(sum.Failed)}
	}
	return nil
}

// copyOnce makes one CopyItems call, keeping its totals in call and
// handing each failure to failed. It returns the cursor that resumes
// after what it reported.
func (c *cli) copyOnce(ctx context.Context, req *kvv1.CopyItemsRequest, call *kvv1.CopyItemsResponse, failed func(*kvv1.BatchFailure), bar *progress) (string, error) {
	cursor := req.GetCursor()
	stream, err := c.client.CopyItems(ctx, req)
	if err != nil {
		return cursor, err
	}
	defer stream.Close()
	take := func(msg *kvv1.CopyItemsResponse) {
		for _, f := range msg.GetFailures() {
			failed(f)
		}
		settled := msg.GetCopied() + msg.GetSkipped() + msg.GetFailed()
		bar.add(int(settled-(call.GetCopied()+call.GetSkipped()+call.GetFailed())), 0)
		call.Copied, call.Skipped, call.Failed = msg.GetCopied(), msg.GetSkipped(), msg.GetFailed()
		cursor = msg.GetCursor()
	}
	for {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return cursor, connect.NewError(connect.CodeUnavailable, "the copy ended before it was done")
		}
		if err != nil {
			var ce *connect.Error
			if errors.As(err, &ce) {
				if d, ok := detail[*kvv1.CopyItemsResponse](ce); ok {
					take(d)
				}
			}
			return cursor, err
		}
		take(msg)
		if msg.GetDone() {
			return "", nil
		}
	}
}
