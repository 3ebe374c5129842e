package upstream

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// BatchLine is one item of a batch PUT. Fastly's batch lines are plain
// upserts: they carry no add, append, prepend or generation check.
type BatchLine struct {
	Key             string
	Value           []byte
	Metadata        string
	TimeToLive      time.Duration
	BackgroundFetch bool
}

// AppendBatchLine appends line to dst as one NDJSON line of Fastly's batch
// format, {"key":...,"value":<base64>,...}, with its trailing newline.
func AppendBatchLine(dst []byte, line BatchLine) []byte {
	dst = append(dst, `{"key":`...)
	dst = appendJSONString(dst, line.Key)
	dst = append(dst, `,"value":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, line.Value)
	dst = append(dst, '"')
	if line.Metadata != "" {
		dst = append(dst, `,"metadata":`...)
		dst = appendJSONString(dst, line.Metadata)
	}
	if secs := ttlSeconds(line.TimeToLive); secs > 0 {
		dst = append(dst, `,"time_to_live_sec":`...)
		dst = strconv.AppendInt(dst, secs, 10)
	}
	if line.BackgroundFetch {
		dst = append(dst, `,"background_fetch":true`...)
	}
	return append(dst, "}\n"...)
}

// BatchLineSize is the exact length AppendBatchLine writes for line, so
// callers can bound a batch body before encoding into it.
func BatchLineSize(line BatchLine) int {
	return len(AppendBatchLine(nil, BatchLine{Key: line.Key, Metadata: line.Metadata, TimeToLive: line.TimeToLive, BackgroundFetch: line.BackgroundFetch})) +
		base64.StdEncoding.EncodedLen(len(line.Value))
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // strings always marshal
	return append(dst, b...)
}

// ttlSeconds rounds a TTL up to whole seconds, so a short TTL never
// becomes none.
func ttlSeconds(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	secs := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		secs++ // without overflowing near the largest Duration
	}
	return secs
}

// BatchLineError is Fastly's report of one bad line of a batch.
type BatchLineError struct {
	// Index is the line's 0-based position in the batch body.
	Index int
	// Key is empty when the line could not be parsed.
	Key string
	// Code is Fastly's code for the line, an HTTP status as a string.
	Code   string
	Reason string
}

// BatchResult is the outcome of a batch PUT that Fastly answered line by
// line: no line errors means every line was accepted.
type BatchResult struct {
	LineErrors []BatchLineError
}

// batchResponse is the batch endpoint's body; every field is optional
// (Fastly once answered 200 with an empty body), index may come as a number
// or a string and code as a string or a number.
type batchResponse struct {
	Title  string `json:"title"`
	Type   string `json:"type"`
	Errors []struct {
		Key    string          `json:"key"`
		Index  json.RawMessage `json:"index"`
		Code   json.RawMessage `json:"code"`
		Reason string          `json:"reason"`
		Detail string          `json:"detail"`
	} `json:"errors"`
}

// ParseBatchResponse reads a batch endpoint body leniently: an empty body
// has no line errors; an error entry without a usable index is an error of
// the response as a whole. [Client.PutBatch] reads its answers with it. It
// is exported on purpose, so that a server standing in for Fastly (the
// local store's tests) can check its answers read the way the client
// reads them.
func ParseBatchResponse(body []byte) (*BatchResult, error) {
	res := &BatchResult{}
	if len(bytes.TrimSpace(body)) == 0 {
		return res, nil
	}
	var parsed batchResponse
	if err := json.Unmarshal(body, &parsed); err != nil {
		return nil, &ResponseError{Op: OpBatch, Reason: "batch response is not JSON: " + err.Error()}
	}
	for _, e := range parsed.Errors {
		idx, err := strconv.Atoi(strings.Trim(string(e.Index), `"`))
		if err != nil || idx < 0 {
			return nil, &ResponseError{Op: OpBatch, Reason: fmt.Sprintf("batch error without a line index: %q", e.Index)}
		}
		reason := e.Reason
		if reason == "" {
			reason = e.Detail
		}
		res.LineErrors = append(res.LineErrors, BatchLineError{
			Index:  idx,
			Key:    e.Key,
			Code:   strings.Trim(string(e.Code), `"`),
			Reason: reason,
		})
	}
	return res, nil
}

// maxBatchResponse bounds how much of a batch answer is read: one error
// entry per line of a large batch fits easily.
const maxBatchResponse = 8 << 20

// PutBatch sends body, NDJSON lines built with AppendBatchLine, as one
// batch PUT. Line errors come back in the result, whatever the status; a
// failure of the call as a whole is an error. Batch lines are upserts, so a
// failed batch is retried as a unit.
func (c *Client) PutBatch(ctx context.Context, storeID string, body []byte) (*BatchResult, error) {
	var res *BatchResult
	cl := &call{
		op: OpBatch, method: http.MethodPut, path: storePath(storeID) + "/batch",
		header: http.Header{"Content-Type": {"application/x-ndjson"}},
		body:   body,
		// Fastly reports bad lines with a non-success status too.
		acceptStatus: func(int) bool { return true },
	}
	cl.read = func(resp *http.Response) error {
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBatchResponse))
		if err != nil {
			return err
		}
		parsed, parseErr := ParseBatchResponse(raw)
		ok := success(resp.StatusCode)
		switch {
		case parseErr == nil && (ok || len(parsed.LineErrors) > 0):
			res = parsed
			return nil
		case ok:
			// The status said success, but an unreadable body may hide
			// line errors, so the caller cannot count on it.
			return parseErr
		}
		return c.statusError(cl, resp, raw)
	}
	if err := c.run(ctx, cl); err != nil {
		return nil, err
	}
	return res, nil
}
