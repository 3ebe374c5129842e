package kvctl

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
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

// batchLine is one line of Fastly's batch format.
type batchLine struct {
	Key             *string `json:"key"`
	Value           string  `json:"value"`
	Metadata        string  `json:"metadata"`
	TimeToLiveSec   int64   `json:"time_to_live_sec"`
	BackgroundFetch bool    `json:"background_fetch"`
}

func ndjsonSource(r io.Reader) source {
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	return func() (*kvv1.BatchItem, error) {
		for {
			raw, err := br.ReadBytes('\n')
			if len(raw) == 0 && err != nil {
				if err == io.EOF {
					return nil, io.EOF
				}
				return nil, localError{err}
			}
			n++
			raw = bytes.TrimSpace(raw)
			if len(raw) == 0 {
				continue
			}
			var l batchLine
			if err := json.Unmarshal(raw, &l); err != nil {
				return nil, &lineError{n, err}
			}
			if l.Key == nil {
				return nil, &lineError{n, errors.New(`no "key"`)}
			}
			value, err := base64.StdEncoding.DecodeString(l.Value)
			if err != nil {
				return nil, &lineError{n, fmt.Errorf("value is not standard base64: %v", err)}
			}
			item := &kvv1.BatchItem{Key: *l.Key, Value: value, Metadata: l.Metadata, BackgroundFetch: l.BackgroundFetch}
			if l.TimeToLiveSec > 0 {
				item.TimeToLive = durationpb.New(time.Duration(l.TimeToLiveSec) * time.Second)
			}
			return item, nil
		}
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

// viceroyEntry is a Viceroy local-store JSON value in its object form.
type viceroyEntry struct {
	Data     *string `json:"data"`
	File     *string `json:"file"`
	Metadata string  `json:"metadata"`
}

// viceroySource reads a Viceroy local-store JSON object, in key order.
func viceroySource(path string) (source, int64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, localError{err}
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, 0, localError{fmt.Errorf("%s: not a Viceroy JSON object: %w", path, err)}
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	base := filepath.Dir(path)
	i := 0
	return func() (*kvv1.BatchItem, error) {
		if i == len(keys) {
			return nil, io.EOF
		}
		key := keys[i]
		i++
		item, err := viceroyItem(base, key, entries[key])
		if err != nil {
			return nil, &lineError{i, fmt.Errorf("key %q: %w", key, err)}
		}
		return item, nil
	}, -1, nil
}

func viceroyItem(base, key string, raw json.RawMessage) (*kvv1.BatchItem, error) {
	var data string
	if json.Unmarshal(raw, &data) == nil {
		return &kvv1.BatchItem{Key: key, Value: []byte(data)}, nil
	}
	var e viceroyEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, errors.New(`want a string or {"data"|"file","metadata"}`)
	}
	switch {
	case (e.Data == nil) == (e.File == nil):
		return nil, errors.New(`want exactly one of "data" and "file"`)
	case e.Data != nil:
		return &kvv1.BatchItem{Key: key, Value: []byte(*e.Data), Metadata: e.Metadata}, nil
	}
	p := *e.File
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	value, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return &kvv1.BatchItem{Key: key, Value: value, Metadata: e.Metadata}, nil
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
