package kvctl

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/seedfile"
)

// Items per BatchPutItems message, and bytes of values per message.
const (
	importMsgItems = 500
	importMsgBytes = 4 << 20
)

func (c *cli) importCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "import -s STORE [FILE|DIR]",
		Short: "write items from NDJSON (stdin unless FILE), a directory, or a Viceroy JSON file",
		Long: "import writes items through BatchPutItems and reports every item that failed.\n\n" +
			"Sources:\n" +
			"  NDJSON (default; stdin when no FILE): Fastly's batch format, one\n" +
			"    {\"key\",\"value\"(base64),\"metadata\",\"time_to_live_sec\",\"background_fetch\"} per line\n" +
			"  DIR: one item per regular file, its slash-separated relative path the key\n" +
			"  --format viceroy: a Viceroy local-store JSON object, {\"key\": \"data\"} or\n" +
			"    {\"key\": {\"data\": \"...\" | \"file\": \"path\", \"metadata\": \"...\"}}; file paths\n" +
			"    are relative to the JSON file's directory",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, total, err := c.importSource(args, format)
			if err != nil {
				return err
			}
			return c.runImport(cmd, src, total)
		},
	}
	cmd.Flags().StringVar(&format, "format", "auto", "ndjson, viceroy or auto (a directory, else ndjson)")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"auto", "ndjson", "viceroy"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// source yields items one at a time: io.EOF at the end; a *lineError for
// an item that could not be read (the import goes on).
type source func() (*kvv1.BatchItem, error)

type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }

// importSource opens what args and format name; total is its size in bytes
// for progress, -1 when unknown.
func (c *cli) importSource(args []string, format string) (source, int64, error) {
	path := "-"
	if len(args) == 1 {
		path = args[0]
	}
	if path == "-" {
		if format == "viceroy" {
			return nil, 0, usagef("--format viceroy needs a FILE (its file entries are relative to it)")
		}
		return ndjsonSource(c.stdin), -1, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, localError{err}
	}
	switch {
	case st.IsDir():
		return dirSource(path)
	case format == "viceroy":
		return viceroySource(path)
	case format == "auto" || format == "ndjson":
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, localError{err}
		}
		return ndjsonSource(f), st.Size(), nil
	}
	return nil, 0, usagef("--format %q: want ndjson, viceroy or auto", format)
}

// ndjsonSource reads Fastly's batch format from r.
func ndjsonSource(r io.Reader) source {
	return itemSource(seedfile.NewNDJSON(r, "-").Next, nil)
}

// itemSource turns a seed file reader into a source; a bad item becomes a
// *lineError, built by bad, or at its NDJSON line when bad is nil.
func itemSource(next func() (seedfile.Item, error), bad func(n int, e *seedfile.Error) *lineError) source {
	n := 0
	return func() (*kvv1.BatchItem, error) {
		it, err := next()
		n++
		var se *seedfile.Error
		switch {
		case errors.As(err, &se):
			if bad != nil {
				return nil, bad(n, se)
			}
			return nil, &lineError{se.Line, se.Err}
		case err == io.EOF:
			return nil, io.EOF
		case err != nil:
			return nil, localError{err}
		}
		item := &kvv1.BatchItem{Key: it.Key, Value: it.Value, Metadata: it.Metadata, BackgroundFetch: it.BackgroundFetch}
		if it.TTL > 0 {
			item.TimeToLive = durationpb.New(it.TTL)
		}
		return item, nil
	}
}

// dirSource reads every regular file under dir, in path order.
func dirSource(dir string) (source, int64, error) {
	var paths []string
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return nil, 0, localError{err}
	}
	i := 0
	return func() (*kvv1.BatchItem, error) {
		if i == len(paths) {
			return nil, io.EOF
		}
		p := paths[i]
		i++
		rel, _ := filepath.Rel(dir, p)
		value, err := os.ReadFile(p)
		if err != nil {
			return nil, localError{err}
		}
		return &kvv1.BatchItem{Key: filepath.ToSlash(rel), Value: value}, nil
	}, total, nil
}

// viceroySource reads a Viceroy local-store JSON object, in key order; a
// bad entry is reported at its position in that order.
func viceroySource(path string) (source, int64, error) {
	v, err := seedfile.OpenViceroyJSON(path)
	if err != nil {
		var se *seedfile.Error
		if errors.As(err, &se) {
			return nil, 0, localError{fmt.Errorf("%s: %w", se.File, se.Err)}
		}
		return nil, 0, localError{err}
	}
	return itemSource(v.Next, func(n int, e *seedfile.Error) *lineError {
		return &lineError{n, fmt.Errorf("key %q: %w", e.Key, e.Err)}
	}), -1, nil
}

// importSummary is import's result; failures name each item not written.
type importSummary struct {
	Written  uint64        `json:"written"`
	Failures []itemFailure `json:"failures"`
}

// runImport streams src through one BatchPutItems call.
func (c *cli) runImport(cmd *cobra.Command, src source, total int64) error {
	stream, err := c.client.BatchPutItems(cmd.Context())
	if err != nil {
		return err
	}
	bar := c.progress(total, "importing")
	sum := importSummary{Failures: []itemFailure{}}
	var local int // items that failed here, never sent
	msg := &kvv1.BatchPutItemsRequest{StoreId: c.store}
	size := 0
	sendErr := func() error {
		if len(msg.Items) == 0 {
			return nil
		}
		err := stream.Send(msg)
		msg = &kvv1.BatchPutItemsRequest{}
		size = 0
		return err
	}
	var readErr error
	for readErr == nil {
		item, err := src()
		var le *lineError
		switch {
		case err == io.EOF:
			readErr = io.EOF
			continue
		case errors.As(err, &le):
			local++
			sum.Failures = append(sum.Failures, itemFailure{Line: le.line, Code: "invalid_argument", Reason: le.err.Error()})
			fmt.Fprintf(c.stderr, "kvctl: import: %v\n", le)
			continue
		case err != nil:
			readErr = err
			continue
		}
		msg.Items = append(msg.Items, item)
		size += len(item.GetValue())
		bar.add(1, len(item.GetValue()))
		if len(msg.Items) >= importMsgItems || size >= importMsgBytes {
			if err := sendErr(); err != nil {
				break // the status comes from CloseAndReceive
			}
		}
	}
	if readErr == io.EOF {
		_ = sendErr()
	}
	res, err := stream.CloseAndReceive()
	bar.finish()
	if readErr != io.EOF && readErr != nil {
		return readErr
	}
	if err != nil {
		return err
	}
	sum.Written = res.GetWritten()
	for _, f := range res.GetFailures() {
		idx := f.GetIndex()
		sum.Failures = append(sum.Failures, itemFailure{Index: &idx, Key: f.GetKey(), Code: f.GetCode(), Reason: f.GetReason()})
		fmt.Fprintf(c.stderr, "kvctl: import: item %d (key %q): %s: %s\n", idx, f.GetKey(), f.GetCode(), f.GetReason())
	}
	if c.json {
		c.printJSON(sum)
	} else {
		fmt.Fprintf(c.stderr, "imported %d items", sum.Written)
		if n := len(sum.Failures); n > 0 {
			fmt.Fprintf(c.stderr, ", %d failed", n)
		}
		fmt.Fprintln(c.stderr)
	}
	if len(sum.Failures) > 0 {
		return partialError{len(sum.Failures)}
	}
	return nil
}
