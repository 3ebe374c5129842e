package localstore

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kvgate/kvgate/upstream"
)

const (
	// batchLineSlack is the room a line gets beyond its base64 value: a key
	// and metadata at their limits with every byte escaped as \u00XX (6 ×
	// 3024 bytes), the field names, a TTL, and whitespace.
	batchLineSlack = 64 << 10
	// batchReadBuffer is the bufio.Reader size; lines longer than it are
	// assembled from several reads.
	batchReadBuffer = 64 << 10
)

// batchSuccess is Fastly's recorded answer to a batch, byte for byte.
const batchSuccess = `{"type":"","title":"success","errors":[]}`

// batchResponse is Fastly's KvStoreBatchResponse. Only failures are
// marshalled; success is batchSuccess.
type batchResponse struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Errors []batchError `json:"errors"`
}

// batchError is Fastly's KvStoreBatchResponseErrors: one bad line.
type batchError struct {
	Key    string `json:"key"`
	Index  int    `json:"index"`
	Code   string `json:"code"` // a string, as in Fastly's schema
	Reason string `json:"reason"`
}

// handleBatch serves PUT /resources/stores/kv/{store}/batch, whose NDJSON
// body holds one item per line (see parseBatchLine). A batch is all or
// nothing: when every line is valid all are applied in one transaction, in
// order, and the answer is Fastly's recorded success; otherwise the answer
// is 400 listing every bad line by its index among the non-blank lines, and
// nothing is applied. A body over Config.MaxBatchBytes is refused with 413.
func (s *Store) handleBatch(w http.ResponseWriter, r *http.Request) {
	store := r.PathValue("store")
	if store == "" {
		badRequest(w, "missing store id")
		return
	}
	if r.ContentLength > s.maxBatch {
		s.batchTooLarge(w)
		return
	}
	items, lineErrs, err := s.readBatch(http.MaxBytesReader(w, r.Body, s.maxBatch))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.batchTooLarge(w)
			return
		}
		badRequest(w, "reading body: %v", err)
		return
	}
	if len(lineErrs) > 0 {
		// All or nothing: Fastly does not say whether the valid lines of
		// such a batch are applied. kvgate resends the valid lines itself,
		// so it needs neither, and all-or-nothing is what a test can
		// depend on.
		body, err := json.Marshal(batchResponse{
			Type:   "invalid items; none was written",
			Title:  "failure",
			Errors: lineErrs,
		})
		if err != nil {
			s.writeOutcome(w, r, err)
			return
		}
		writeJSON(w, http.StatusBadRequest, body)
		return
	}
	if err := s.putBatch(store, items); err != nil {
		s.writeOutcome(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, []byte(batchSuccess))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Store) batchTooLarge(w http.ResponseWriter) {
	writeError(w, http.StatusRequestEntityTooLarge, "Request entity too large",
		fmt.Sprintf("batch bodies are limited to %d bytes", s.maxBatch))
}

// maxBatchLine is the longest line a valid batch item can take.
func (s *Store) maxBatchLine() int {
	return base64.StdEncoding.EncodedLen(int(s.maxValue)) + batchLineSlack
}

// readBatch reads a batch body line by line. It returns the items of the
// valid lines when every line is valid, or the errors of the bad ones
// (and no items: once a line is bad nothing will be written, so the values
// of later lines are not kept). err is a failure to read the body.
func (s *Store) readBatch(body io.Reader) ([]batchItem, []batchError, error) {
	br := bufio.NewReaderSize(body, batchReadBuffer)
	maxLine := s.maxBatchLine()
	var (
		items    []batchItem
		lineErrs []batchError
		buf      []byte
	)
	for index := 0; ; {
		line, tooLong, err := readLine(br, maxLine, buf[:0])
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		buf = line
		trimmed := bytes.Trim(line, " \t\r")
		if tooLong || len(trimmed) > 0 {
			var it batchItem
			var key, reason string
			if tooLong {
				reason = fmt.Sprintf("line is longer than %d bytes, more than any valid item takes (values are limited to %d bytes)", maxLine, s.maxValue)
			} else {
				it, key, reason = parseBatchLine(trimmed, s.maxValue)
			}
			switch {
			case reason != "":
				lineErrs = append(lineErrs, batchError{Key: key, Index: index, Code: "400", Reason: reason})
				items = nil
			case len(lineErrs) == 0:
				items = append(items, it)
			}
			index++
		}
		if err == io.EOF {
			return items, lineErrs, nil
		}
	}
}

// readLine appends the next line of br, without its '\n', to buf and
// returns it. A line longer than limit is read to its end but not kept: it
// comes back empty with tooLong set, having taken at most limit plus one
// read buffer of memory. err is io.EOF with the last line (which need not
// end in '\n', and is empty when the body ends in one), or the reader's
// error.
func readLine(br *bufio.Reader, limit int, buf []byte) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, chunk...)
			n := len(buf)
			if err == nil {
				n-- // the '\n'
			}
			if n > limit {
				tooLong, buf = true, buf[:0]
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == nil && !tooLong:
			return buf[:len(buf)-1], false, nil
		default:
			return buf, tooLong, err
		}
	}
}

// parseBatchLine parses one non-blank line, without surrounding whitespace:
//
//	{"key":"k","value":"VkFMVUU=","metadata":"m","time_to_live_sec":60,"background_fetch":true}
//
// key (see [upstream.CheckKey]) and value (strict padded standard base64 of
// at most maxValue bytes) are required. metadata (see [upstream.CheckMetadata])
// and time_to_live_sec (above 0) are optional; absent or null clears them,
// as every write does. background_fetch and unknown fields are ignored;
// names match exactly. It returns the item, or the key to report (empty
// when the line or a known field does not parse) and why the line is refused.
func parseBatchLine(line []byte, maxValue int64) (it batchItem, key, reason string) {
	if !utf8.Valid(line) {
		return it, "", "line is not valid UTF-8"
	}
	var fields map[string]json.RawMessage
	if line[0] != '{' {
		return it, "", "line is not a JSON object"
	}
	if err := json.Unmarshal(line, &fields); err != nil {
		return it, "", "line is not a JSON object: " + err.Error()
	}
	var (
		k, value, metadata *string
		ttl                *int64
		backgroundFetch    *bool
	)
	for _, f := range []struct {
		name, want string
		dst        any
	}{
		{"key", "a string", &k},
		{"value", "a base64 string", &value},
		{"metadata", "a string", &metadata},
		{"time_to_live_sec", "a positive integer", &ttl},
		{"background_fetch", "true or false", &backgroundFetch},
	} {
		raw, ok := fields[f.name]
		if !ok {
			continue
		}
		// null leaves the pointer nil: the same as an absent field.
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return it, "", fmt.Sprintf("%s must be %s", f.name, f.want)
		}
	}
	if k == nil {
		return it, "", "missing key"
	}
	key = *k
	if err := upstream.CheckKey(key); err != nil {
		return it, key, fmt.Sprintf("invalid key: key %v", err)
	}
	if value == nil {
		return it, key, "missing value"
	}
	v, err := decodeValue(*value)
	if err != nil {
		return it, key, "value is not standard base64 with padding"
	}
	if int64(len(v)) > maxValue {
		return it, key, fmt.Sprintf("value is %d bytes; the limit is %d", len(v), maxValue)
	}
	it = batchItem{key: key, value: v}
	if metadata != nil {
		if err := upstream.CheckMetadata(*metadata); err != nil {
			return batchItem{}, key, fmt.Sprintf("invalid metadata: metadata %v", err)
		}
		it.metadata = *metadata
	}
	if ttl != nil {
		if it.ttl, err = ttlFromSeconds(*ttl); err != nil {
			return batchItem{}, key, err.Error()
		}
	}
	return it, key, ""
}

// decodeValue decodes standard, padded base64 strictly: Go's decoder would
// otherwise skip CR and LF.
func decodeValue(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("line break in base64")
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}
