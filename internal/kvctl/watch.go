package kvctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

// changeJSON is how watch --json prints a change, one object per line.
type changeJSON struct {
	Type         string `json:"type"`
	Key          string `json:"key"`
	Generation   string `json:"generation,omitempty"`
	Size         *int64 `json:"size,omitempty"`
	Metadata     string `json:"metadata,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	ObservedAt   string `json:"observed_at,omitempty"`
}

func (c *cli) watchCommand() *cobra.Command {
	var prefix string
	var initial bool
	var interval time.Duration
	res := &resumer{c: c, verb: "watch"}
	cmd := &cobra.Command{
		Use:   "watch -s STORE KEY... | watch -s STORE --prefix PREFIX",
		Short: "print each change to the KEYs, or to the keys under --prefix, until interrupted",
		Long: "watch prints one line per change, as WatchItems reports it: TYPE, KEY, GENERATION\n" +
			"and SIZE, tab-separated (TYPE is created, updated, deleted, or present for the\n" +
			"state --initial prints first; a deleted key has - for the last two). With --json,\n" +
			"one object per line. kvgate polls (every --interval, at least its own floor), so\n" +
			"several writes between two polls are one change. When the stream ends (kvgate\n" +
			"shutting down or unavailable) watch reconnects with the state it has seen, and\n" +
			"kvgate reports every difference, including changes made while no watch was open.",
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			byPrefix := cmd.Flags().Changed("prefix")
			switch {
			case byPrefix && len(args) > 0:
				return usagef("give KEYs or --prefix, not both")
			case !byPrefix && len(args) == 0:
				return usagef("give KEYs, or --prefix (an empty one watches the whole store)")
			case interval < 0:
				return usagef("--interval must not be negative")
			case res.retries < 0:
				return usagef("--retries must not be negative")
			}
			req := &kvv1.WatchItemsRequest{StoreId: c.store, Keys: args, Prefix: prefix}
			if interval > 0 {
				req.Interval = durationpb.New(interval)
			}
			return c.watch(cmd.Context(), req, initial, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", "", "watch every key that begins with this")
	f.BoolVar(&initial, "initial", false, "first print each watched key that exists, as present")
	f.DurationVar(&interval, "interval", 0, "how often kvgate polls (its floor when shorter or unset)")
	res.register(cmd, 10, "reconnections in a row that receive nothing before watch gives up; 0 never reconnects")
	return cmd
}

// watch streams changes until ctx ends or the watch fails for good. The
// first call asks for the initial state, whether or not it is printed:
// it is the baseline that every later call resumes from, sent as known.
func (c *cli) watch(ctx context.Context, req *kvv1.WatchItemsRequest, printInitial bool, res *resumer) error {
	known := map[string]uint64{}
	baseline := false // the initial state has arrived
	for {
		req.SendInitialState = !baseline
		req.Known = req.Known[:0]
		if baseline {
			for k, g := range known {
				req.Known = append(req.Known, &kvv1.KeyGeneration{Key: k, Generation: g})
			}
		}
		progressed, err := c.watchOnce(ctx, req, func(msg *kvv1.WatchItemsResponse) error {
			quiet := msg.GetInitial() && !baseline && !printInitial
			if msg.GetInitial() {
				baseline = true
			}
			for _, ch := range msg.GetChanges() {
				if ch.GetType() == kvv1.ChangeType_CHANGE_TYPE_DELETED {
					delete(known, ch.GetKey())
				} else {
					known[ch.GetKey()] = ch.GetItem().GetGeneration()
				}
				if quiet {
					continue
				}
				if err := c.printChange(ch, msg); err != nil {
					return err
				}
			}
			return nil
		})
		if ctx.Err() != nil {
			return nil // interrupted: the way a watch ends
		}
		// Until the baseline has arrived there is nothing to resume: a
		// watch that cannot start fails at once.
		var le localError
		if errors.As(err, &le) {
			return err
		}
		if err == nil {
			// A clean end: kvgate is shutting down. Another kvgate, or
			// this one restarted, takes the watch over.
			err = connect.NewError(connect.CodeUnavailable, "kvgate ended the watch (shutting down)")
		}
		if !baseline || !res.again(ctx, err, progressed) {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// watchOnce makes one WatchItems call and hands each message to each. It
// reports whether any message arrived, and ends with nil when the stream
// ended cleanly.
func (c *cli) watchOnce(ctx context.Context, req *kvv1.WatchItemsRequest, each func(*kvv1.WatchItemsResponse) error) (bool, error) {
	stream, err := c.client.WatchItems(ctx, req)
	if err != nil {
		return false, err
	}
	defer stream.Close()
	got := false
	for {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = true
		if err := each(msg); err != nil {
			return got, err
		}
	}
}

// printChange prints one change: a tab-separated line, or a JSON line.
func (c *cli) printChange(ch *kvv1.ItemChange, msg *kvv1.WatchItemsResponse) error {
	typ := strings.ToLower(strings.TrimPrefix(ch.GetType().String(), "CHANGE_TYPE_"))
	item := ch.GetItem()
	if c.json {
		j := changeJSON{Type: typ, Key: ch.GetKey()}
		if item != nil {
			j.Generation = strconv.FormatUint(item.GetGeneration(), 10)
			j.Metadata = item.GetMetadata()
			if item.Size != nil {
				size := int64(item.GetSize())
				j.Size = &size
			}
			if t := item.GetLastModified(); t != nil {
				j.LastModified = t.AsTime().UTC().Format(time.RFC3339)
			}
		}
		if t := msg.GetObservedAt(); t != nil {
			j.ObservedAt = t.AsTime().UTC().Format(time.RFC3339Nano)
		}
		c.printJSON(j)
		return nil
	}
	gen, size := "-", "-"
	if item != nil {
		gen = strconv.FormatUint(item.GetGeneration(), 10)
		if item.Size != nil {
			size = strconv.FormatUint(item.GetSize(), 10)
		}
	}
	if _, err := fmt.Fprintf(c.stdout, "%s\t%s\t%s\t%s\n", typ, ch.GetKey(), gen, size); err != nil {
		return localError{err}
	}
	return nil
}
