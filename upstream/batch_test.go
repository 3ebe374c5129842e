package upstream_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

// TestAppendBatchLine checks that each encoded line is one JSON object in
// Fastly's batch shape that decodes back to the item, whatever bytes the
// key, value and metadata hold.
func TestAppendBatchLine(t *testing.T) {
	t.Parallel()
	cases := []upstream.BatchLine{
		{Key: "batch-1", Value: []byte("VALUE")},
		{Key: "", Value: nil},
		{Key: `quote"back\slash`, Value: []byte{0, 0xff, '\n'}, Metadata: "<tag>&\u2028"},
		{Key: "users/42", Value: bytes.Repeat([]byte{1, 2, 3}, 1000), Metadata: "m", TimeToLive: 90 * time.Second, BackgroundFetch: true},
		{Key: "short-ttl", TimeToLive: 1500 * time.Millisecond},
	}
	for _, line := range cases {
		enc := upstream.AppendBatchLine([]byte("prefix"), line)
		if !bytes.HasPrefix(enc, []byte("prefix")) || !bytes.HasSuffix(enc, []byte("}\n")) {
			t.Fatalf("%q: not appended as one line", enc)
		}
		body := enc[len("prefix"):]
		if bytes.Count(body, []byte("\n")) != 1 {
			t.Fatalf("%q: holds a raw newline inside the line", body)
		}
		if got := upstream.BatchLineSize(line); got != len(body) {
			t.Errorf("BatchLineSize = %d, encoded %d bytes", got, len(body))
		}
		var decoded struct {
			Key             string `json:"key"`
			Value           string `json:"value"`
			Metadata        string `json:"metadata"`
			TimeToLiveSec   int64  `json:"time_to_live_sec"`
			BackgroundFetch bool   `json:"background_fetch"`
		}
		if err := json.Unmarshal(body, &decoded); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		value, err := base64.StdEncoding.DecodeString(decoded.Value)
		if err != nil {
			t.Fatalf("value %q is not standard base64: %v", decoded.Value, err)
		}
		wantTTL := int64((line.TimeToLive + time.Second - 1) / time.Second)
		if decoded.Key != line.Key || !bytes.Equal(value, line.Value) || decoded.Metadata != line.Metadata ||
			decoded.TimeToLiveSec != wantTTL || decoded.BackgroundFetch != line.BackgroundFetch {
			t.Errorf("round trip of %+v gave %+v", line, decoded)
		}
	}
}

func TestParseBatchResponse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		body    string
		want    []upstream.BatchLineError
		wantErr bool
	}{
		{name: "recorded success", body: `{"type":"","title":"success","errors":[]}`},
		{name: "empty body (2023)", body: ""},
		{name: "whitespace", body: " \n"},
		{name: "line errors", body: `{"title":"errors","errors":[{"key":"a#b","index":2,"code":"400","reason":"bad key"},{"key":"","index":"5","code":400,"detail":"unparsable"}]}`,
			want: []upstream.BatchLineError{{Index: 2, Key: "a#b", Code: "400", Reason: "bad key"}, {Index: 5, Code: "400", Reason: "unparsable"}}},
		{name: "not JSON", body: "<html>", wantErr: true},
		{name: "error without index", body: `{"errors":[{"key":"k","code":"400"}]}`, wantErr: true},
		{name: "negative index", body: `{"errors":[{"index":-1}]}`, wantErr: true},
	}
	for _, tc := range cases {
		res, err := upstream.ParseBatchResponse([]byte(tc.body))
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s: error %v, want error %v", tc.name, err, tc.wantErr)
		}
		if err != nil {
			var re *upstream.ResponseError
			if !errors.As(err, &re) {
				t.Errorf("%s: error %T, want *upstream.ResponseError", tc.name, err)
			}
			continue
		}
		if len(res.LineErrors) != len(tc.want) {
			t.Fatalf("%s: line errors %+v, want %+v", tc.name, res.LineErrors, tc.want)
		}
		for i := range tc.want {
			if res.LineErrors[i] != tc.want[i] {
				t.Errorf("%s: line error %d = %+v, want %+v", tc.name, i, res.LineErrors[i], tc.want[i])
			}
		}
	}
}

// TestPutBatchWire checks the request PutBatch sends and how it reads each
// kind of answer.
func TestPutBatchWire(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		status     int
		body       string
		wantLines  int
		wantStatus int // a *StatusError with this status
		wantResp   bool
	}{
		{name: "success", status: 200, body: `{"type":"","title":"success","errors":[]}`},
		{name: "empty success", status: 200},
		{name: "line errors on 400", status: 400, body: `{"errors":[{"key":"k","index":0,"code":"400","reason":"r"}]}`, wantLines: 1},
		{name: "line errors on 200", status: 200, body: `{"errors":[{"key":"k","index":0,"code":"400","reason":"r"}]}`, wantLines: 1},
		{name: "400 without lines", status: 400, body: `{"msg":"bad"}`, wantStatus: 400},
		{name: "401", status: 401, wantStatus: 401},
		{name: "404", status: 404, body: `{"msg":"Record not found"}`, wantStatus: 404},
		{name: "429", status: 429, wantStatus: 429},
		{name: "503", status: 503, body: "<html>", wantStatus: 503},
		{name: "unreadable success", status: 200, body: "<html>", wantResp: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got *http.Request
			var gotBody []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = r
				gotBody, _ = io.ReadAll(r.Body)
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL, Token: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			body := upstream.AppendBatchLine(nil, upstream.BatchLine{Key: "k", Value: []byte("v")})
			res, err := c.PutBatch(t.Context(), "store-1", body)
			if got.Method != http.MethodPut || got.URL.EscapedPath() != "/resources/stores/kv/store-1/batch" ||
				got.Header.Get("Content-Type") != "application/x-ndjson" || got.Header.Get("Fastly-Key") != "tok" ||
				!bytes.Equal(gotBody, body) {
				t.Errorf("request %s %s %v body %q", got.Method, got.URL, got.Header, gotBody)
			}
			var se *upstream.StatusError
			var re *upstream.ResponseError
			switch {
			case tc.wantStatus != 0:
				if !errors.As(err, &se) || se.Status != tc.wantStatus || se.Op != upstream.OpBatch {
					t.Fatalf("err = %v, want status %d", err, tc.wantStatus)
				}
			case tc.wantResp:
				if !errors.As(err, &re) {
					t.Fatalf("err = %v, want *ResponseError", err)
				}
			default:
				if err != nil || len(res.LineErrors) != tc.wantLines {
					t.Fatalf("PutBatch = %+v, %v; want %d line errors", res, err, tc.wantLines)
				}
			}
		})
	}
}
