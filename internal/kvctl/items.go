package kvctl

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

// itemJSON is how get --json prints an item. The generation is a decimal
// string, as in kvgate's JSON, so no JSON reader rounds it.
type itemJSON struct {
	Key          string  `json:"key"`
	Value        *string `json:"value,omitempty"`
	Size         int     `json:"size"`
	Metadata     string  `json:"metadata"`
	Generation   string  `json:"generation"`
	LastModified string  `json:"last_modified,omitempty"`
}

func (c *cli) getCommand() *cobra.Command {
	var meta bool
	var output string
	cmd := &cobra.Command{
		Use:   "get -s STORE KEY...",
		Short: "print an item's value (or, with --meta, its metadata and generation); several KEYs: one line each",
		Long: "get prints one item's value, or with --meta its key, size, metadata, generation and\n" +
			"last-modified time. With several KEYs it reads them in one GetItems call and prints\n" +
			"one tab-separated line per KEY, in the order given: KEY and the value Go-quoted,\n" +
			"or with --meta KEY, SIZE, GENERATION and the metadata Go-quoted; a KEY with no\n" +
			"item prints KEY and -. With --json, one object per line (an absent key\n" +
			"{\"key\",\"absent\":true}). Exit code 3 when any KEY has no item.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				if output != "" {
					return usagef("-o takes one KEY")
				}
				return c.getMany(cmd, args, meta)
			}
			req := &kvv1.GetItemRequest{StoreId: c.store, Key: args[0]}
			if meta && output == "" {
				// Only the value's size is printed, which a HEAD tells:
				// the value itself never moves.
				req.View = kvv1.ItemView_ITEM_VIEW_METADATA
			}
			res, err := c.client.GetItem(cmd.Context(), req)
			if err != nil {
				return err
			}
			item := res.GetItem()
			if output != "" {
				if err := os.WriteFile(output, item.GetValue(), 0o644); err != nil {
					return localError{err}
				}
			}
			j := itemToJSON(item)
			switch {
			case c.json:
				if !meta && output == "" {
					v := base64.StdEncoding.EncodeToString(item.GetValue())
					j.Value = &v
				}
				c.printJSON(j)
			case meta:
				fmt.Fprintf(c.stdout, "key: %s\nsize: %d\nmetadata: %s\ngeneration: %s\n", j.Key, j.Size, j.Metadata, j.Generation)
				if j.LastModified != "" {
					fmt.Fprintf(c.stdout, "last-modified: %s\n", j.LastModified)
				}
			case output == "":
				if _, err := c.stdout.Write(item.GetValue()); err != nil {
					return localError{err}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&meta, "meta", false, "print the key, size, metadata, generation and last-modified time instead of the value, which is then not read")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the value to this file instead of stdout")
	return cmd
}

var putModes = map[string]kvv1.PutMode{
	"overwrite": kvv1.PutMode_PUT_MODE_UNSPECIFIED,
	"add":       kvv1.PutMode_PUT_MODE_ADD,
	"append":    kvv1.PutMode_PUT_MODE_APPEND,
	"prepend":   kvv1.PutMode_PUT_MODE_PREPEND,
}

func (c *cli) putCommand() *cobra.Command {
	var file, metadata, mode string
	var ifGen uint64
	var ttl time.Duration
	var background bool
	cmd := &cobra.Command{
		Use:   "put -s STORE KEY [VALUE]",
		Short: "write an item; the value comes from VALUE, --file or stdin",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &kvv1.PutItemRequest{StoreId: c.store, Key: args[0], Metadata: metadata, BackgroundFetch: background}
			m, ok := putModes[mode]
			if !ok {
				return usagef("--mode %q: want overwrite, add, append or prepend", mode)
			}
			req.Mode = m
			if cmd.Flags().Changed("if-generation") {
				if m == kvv1.PutMode_PUT_MODE_ADD {
					return usagef("--if-generation cannot be combined with --mode add")
				}
				req.IfGenerationMatch = &ifGen
			}
			if ttl < 0 {
				return usagef("--ttl must be positive")
			}
			if ttl > 0 {
				req.TimeToLive = durationpb.New(ttl)
			}
			value, err := c.readValue(args, file)
			if err != nil {
				return err
			}
			req.Value = value
			if _, err := c.client.PutItem(cmd.Context(), req); err != nil {
				return err
			}
			if c.json {
				c.printJSON(map[string]any{"key": req.Key, "size": len(value), "written": true})
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "read the value from this file")
	f.StringVar(&mode, "mode", "overwrite", "overwrite, add (only if absent), append or prepend")
	f.Uint64Var(&ifGen, "if-generation", 0, "write only if the item's generation is this one")
	f.StringVar(&metadata, "metadata", "", "the item's metadata (every write replaces it)")
	f.DurationVar(&ttl, "ttl", 0, "delete the item after this long (whole seconds; 0 keeps it)")
	f.BoolVar(&background, "background-fetch", false, "let readers keep the old value while caches update")
	_ = cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"overwrite", "add", "append", "prepend"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// readValue takes the value from the argument, the file, or stdin.
func (c *cli) readValue(args []string, file string) ([]byte, error) {
	switch {
	case len(args) == 2 && file != "":
		return nil, usagef("give the value as an argument or --file, not both")
	case len(args) == 2:
		return []byte(args[1]), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, localError{err}
		}
		return b, nil
	}
	b, err := io.ReadAll(c.stdin)
	if err != nil {
		return nil, localError{fmt.Errorf("reading stdin: %w", err)}
	}
	return b, nil
}

func (c *cli) lsCommand() *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "ls -s STORE [--prefix PREFIX]",
		Short: "list keys in byte order, streaming (one per line; --json: one {\"key\"} object per line)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.streamKeys(cmd, prefix, func(key string) error {
				if c.json {
					c.printJSON(map[string]string{"key": key})
					return nil
				}
				_, err := fmt.Fprintln(c.stdout, key)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only keys that begin with this")
	return cmd
}

// streamKeys calls each for every key under prefix, in byte order.
func (c *cli) streamKeys(cmd *cobra.Command, prefix string, each func(string) error) error {
	stream, err := c.client.StreamKeys(cmd.Context(), &kvv1.StreamKeysRequest{StoreId: c.store, Prefix: prefix})
	if err != nil {
		return err
	}
	defer stream.Close()
	for {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, k := range msg.GetKeys() {
			if err := each(k); err != nil {
				return err
			}
		}
	}
}

// getManyMissing is returned when some keys of a multi-get have no item:
// each is already printed.
func getManyMissing(n int) error {
	return connect.NewError(connect.CodeNotFound, fmt.Sprintf("%d of the keys have no item", n))
}

// getMany reads keys with one GetItems call and prints one line per key,
// in the order given: each answer waits for those before it.
func (c *cli) getMany(cmd *cobra.Command, keys []string, meta bool) error {
	req := &kvv1.GetItemsRequest{StoreId: c.store, Keys: keys}
	if meta {
		req.View = kvv1.ItemView_ITEM_VIEW_METADATA
	}
	stream, err := c.client.GetItems(cmd.Context(), req)
	if err != nil {
		return err
	}
	defer stream.Close()
	answers := make([]*kvv1.GetItemsResponse, len(keys))
	next, absent, failed := 0, 0, 0
	for next < len(keys) {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return connect.NewError(connect.CodeUnavailable, "the read ended before every key was answered")
		}
		if err != nil {
			return err
		}
		if i := int(msg.GetIndex()); i < len(answers) {
			answers[i] = msg
		}
		for ; next < len(keys) && answers[next] != nil; next++ {
			a := answers[next]
			answers[next] = nil
			switch a.GetResult().(type) {
			case *kvv1.GetItemsResponse_Absent:
				absent++
			case *kvv1.GetItemsResponse_Error:
				failed++
				fmt.Fprintf(c.stderr, "kvctl: get %s: %s: %s\n", a.GetKey(), a.GetError().GetCode(), a.GetError().GetReason())
			}
			if err := c.printAnswer(a, meta); err != nil {
				return err
			}
		}
	}
	switch {
	case failed > 0:
		return partialError{failed}
	case absent > 0:
		return getManyMissing(absent)
	}
	return nil
}

// printAnswer prints one key's answer of a multi-get.
func (c *cli) printAnswer(a *kvv1.GetItemsResponse, meta bool) error {
	key := a.GetKey()
	if c.json {
		switch r := a.GetResult().(type) {
		case *kvv1.GetItemsResponse_Item:
			j := itemToJSON(r.Item)
			if !meta {
				v := base64.StdEncoding.EncodeToString(r.Item.GetValue())
				j.Value = &v
			}
			c.printJSON(j)
		case *kvv1.GetItemsResponse_Absent:
			c.printJSON(map[string]any{"key": key, "absent": true})
		case *kvv1.GetItemsResponse_Error:
			c.printJSON(map[string]any{"key": key, "error": map[string]string{"code": r.Error.GetCode(), "message": r.Error.GetReason()}})
		}
		return nil
	}
	var line string
	switch r := a.GetResult().(type) {
	case *kvv1.GetItemsResponse_Item:
		j := itemToJSON(r.Item)
		if meta {
			line = fmt.Sprintf("%s\t%d\t%s\t%q", key, j.Size, j.Generation, j.Metadata)
		} else {
			line = fmt.Sprintf("%s\t%q", key, r.Item.GetValue())
		}
	case *kvv1.GetItemsResponse_Absent:
		line = key + "\t-"
	default:
		return nil // reported on stderr
	}
	if _, err := fmt.Fprintln(c.stdout, line); err != nil {
		return localError{err}
	}
	return nil
}

// itemToJSON is item as get --json prints it, without its value.
func itemToJSON(item *kvv1.Item) itemJSON {
	size := len(item.GetValue())
	if item.Size != nil {
		size = int(item.GetSize())
	}
	j := itemJSON{Key: item.GetKey(), Size: size, Metadata: item.GetMetadata(),
		Generation: strconv.FormatUint(item.GetGeneration(), 10)}
	if t := item.GetLastModified(); t != nil {
		j.LastModified = t.AsTime().UTC().Format(time.RFC3339)
	}
	return j
}
