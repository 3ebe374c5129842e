package seedfile

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// NDJSON reads Fastly's batch format: one JSON object a line, with "key",
// "value" (standard base64), and optionally "metadata",
// "time_to_live_sec" and "background_fetch". Blank lines are skipped.
type NDJSON struct {
	file string
	br   *bufio.Reader
	line int
}

// NewNDJSON reads r; file names it in errors ("-" for stdin, say).
func NewNDJSON(r io.Reader, file string) *NDJSON {
	return &NDJSON{file: file, br: bufio.NewReaderSize(r, 64<<10)}
}

// batchLine is one line of Fastly's batch format.
type batchLine struct {
	Key             *string `json:"key"`
	Value           string  `json:"value"`
	Metadata        string  `json:"metadata"`
	TimeToLiveSec   int64   `json:"time_to_live_sec"`
	BackgroundFetch bool    `json:"background_fetch"`
}

// Next returns the next item; io.EOF after the last. A line that is not an
// item is an *Error naming it, and the reader goes on past it on the next
// call; any other error is the reader's and ends the file.
func (n *NDJSON) Next() (Item, error) {
	for {
		raw, err := n.br.ReadBytes('\n')
		if len(raw) == 0 && err != nil {
			return Item{}, err
		}
		n.line++
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		var l batchLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return Item{}, n.errorf(err)
		}
		if l.Key == nil {
			return Item{}, n.errorf(errors.New(`no "key"`))
		}
		value, err := base64.StdEncoding.DecodeString(l.Value)
		if err != nil {
			return Item{}, n.errorf(fmt.Errorf("value is not standard base64: %v", err))
		}
		item := Item{Key: *l.Key, Value: value, Metadata: l.Metadata, BackgroundFetch: l.BackgroundFetch, Line: n.line}
		if l.TimeToLiveSec > 0 {
			item.TTL = time.Duration(l.TimeToLiveSec) * time.Second
		}
		return item, nil
	}
}

func (n *NDJSON) errorf(err error) *Error {
	return &Error{File: n.file, Line: n.line, Err: err}
}
