package gateway_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
)

// generous bounds every wait for an answer; the timeouts under test are
// a small fraction of it, and the timeouts that must not be the reason
// for an answer are larger.
const generous = 10 * time.Second

// TestTLSGeneratedClient calls kvgate over TLS with the generated client
// in every protocol, over HTTP/2 chosen by ALPN and over HTTP/1.1.
func TestTLSGeneratedClient(t *testing.T) {
	t.Parallel()
	ca := testutil.NewTestCA(t)
	certPEM, keyPEM := ca.Issue(t, 7, false)
	dir := t.TempDir()
	st := kvtest.Start(t, kvtest.Options{Transport: app.TransportConfig{TLS: httpserver.TLSFiles{
		CertFile: testutil.WriteFile(t, dir, "cert.pem", certPEM),
		KeyFile:  testutil.WriteFile(t, dir, "key.pem", keyPEM),
	}}})
	cases := []struct {
		name string
		h2   bool
		opts []connecthttp.Option
	}{
		{name: "connect h2", h2: true},
		{name: "grpc h2", h2: true, opts: []connecthttp.Option{connecthttp.WithGRPC()}},
		{name: "grpcweb h2", h2: true, opts: []connecthttp.Option{connecthttp.WithGRPCWeb()}},
		{name: "connect http1"},
		{name: "grpcweb http1", opts: []connecthttp.Option{connecthttp.WithGRPCWeb()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := new(http.Protocols)
			p.SetHTTP1(!tc.h2)
			p.SetHTTP2(tc.h2)
			var proto string
			tr := &http.Transport{Protocols: p, TLSClientConfig: &tls.Config{
				RootCAs: ca.Pool(),
				VerifyConnection: func(cs tls.ConnectionState) error {
					proto = cs.NegotiatedProtocol
					return nil
				},
			}}
			defer tr.CloseIdleConnections()
			client := st.NewClient(&http.Client{Transport: tr}, tc.opts...)
			if _, err := client.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: "tls", Key: tc.name, Value: []byte("v")}); err != nil {
				t.Fatalf("PutItem: %v", err)
			}
			res, err := client.GetItem(t.Context(), &kvv1.GetItemRequest{StoreId: "tls", Key: tc.name})
			if err != nil || string(res.GetItem().GetValue()) != "v" {
				t.Fatalf("GetItem: %v %q", err, res.GetItem().GetValue())
			}
			if (proto == "h2") != tc.h2 {
				t.Errorf("ALPN chose %q on a client that offers HTTP/2 %v", proto, tc.h2)
			}
		})
	}
}

// TestOversizeMessageRefused sends messages larger than kvgate accepts,
// with the generated client in every protocol: RESOURCE_EXHAUSTED.
func TestOversizeMessageRefused(t *testing.T) {
	t.Parallel()
	const maxValue = 1 << 10
	st := kvtest.Start(t, kvtest.Options{MaxValueBytes: maxValue})
	value := make([]byte, 256<<10) // past the value and the room beside it
	for name, opts := range map[string][]connecthttp.Option{
		"connect": nil, "grpc": {connecthttp.WithGRPC()}, "grpcweb": {connecthttp.WithGRPCWeb()},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			client := st.NewClient(kvtest.H2CClient(), opts...)
			_, err := client.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: value})
			testutil.WantCode(t, "PutItem of "+strconv.Itoa(len(value))+" bytes", err, connect.CodeResourceExhausted)
		})
	}
	if n := st.Requests(); n != 0 {
		t.Errorf("the upstream received %d requests", n)
	}
}

// rawCall is one hand-made request whose body sends head and then nothing
// more, until the test ends.
type rawCall struct {
	name        string
	client      func() *http.Client
	procedure   string
	contentType string
	head        []byte
	// contentLength is the declared length; -1 for none.
	contentLength int64
}

// claim returns an envelope prefix declaring size bytes, followed by sent
// bytes of payload.
func claim(size uint32, sent int) []byte {
	b := make([]byte, 5+sent)
	binary.BigEndian.PutUint32(b[1:5], size)
	return b
}

// send sends c to st and returns the RPC code of the answer, or "" when
// the connection was closed or the stream reset without one.
func (c rawCall) send(t *testing.T, st *kvtest.Stack) string {
	t.Helper()
	body, w := io.Pipe()
	t.Cleanup(func() { w.Close() })
	go func() { _, _ = w.Write(c.head) }()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, st.URL+c.procedure, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = c.contentLength
	req.Header.Set("Content-Type", c.contentType)
	req.Header.Set("Te", "trailers")
	type answer struct {
		code string
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		res, err := c.client().Do(req)
		if err != nil {
			answers <- answer{err: err}
			return
		}
		defer res.Body.Close()
		payload, err := io.ReadAll(res.Body)
		answers <- answer{code: wireCode(res, payload), err: err}
	}()
	select {
	case a := <-answers:
		if a.code == "" {
			t.Logf("%s: no code; cut off with %v", c.name, a.err)
		}
		return a.code
	case <-time.After(generous):
		t.Fatalf("%s: no answer and not cut off within %v", c.name, generous)
		return ""
	}
}

var (
	grpcStatusInBody  = regexp.MustCompile(`grpc-status: ?(\d+)`)
	connectCodeInBody = regexp.MustCompile(`"code":\s*"([a-z_]+)"`)
)

// wireCode reads the RPC code of a response in any protocol: gRPC's
// Grpc-Status header or trailer, gRPC-Web's trailer frame, or the code in
// a Connect error body.
func wireCode(res *http.Response, body []byte) string {
	grpcStatus := res.Trailer.Get("Grpc-Status")
	if grpcStatus == "" {
		grpcStatus = res.Header.Get("Grpc-Status")
	}
	if m := grpcStatusInBody.FindSubmatch(bytes.ToLower(body)); grpcStatus == "" && m != nil {
		grpcStatus = string(m[1])
	}
	if grpcStatus != "" {
		n, _ := strconv.Atoi(grpcStatus)
		return connect.Code(n).String()
	}
	if m := connectCodeInBody.FindSubmatch(body); m != nil {
		return string(m[1])
	}
	return ""
}

// rawCalls are the same request in each protocol and HTTP version: a
// message over its procedure's limit when oversize, or a message within
// it, either way followed by silence.
func rawCalls(oversize bool) []rawCall {
	size := uint32(100)
	if oversize {
		size = 2 << 30
	}
	put := kvv1connect.KVStoreServicePutItemProcedure
	batch := kvv1connect.KVStoreServiceBatchPutItemsProcedure
	return []rawCall{
		{name: "grpc h2c", client: kvtest.H2CClient, procedure: put, contentType: "application/grpc", head: claim(size, 10), contentLength: -1},
		{name: "grpcweb http1", client: kvtest.HTTP1Client, procedure: put, contentType: "application/grpc-web+proto", head: claim(size, 10), contentLength: -1},
		{name: "connect stream http1", client: kvtest.HTTP1Client, procedure: batch, contentType: "application/connect+proto", head: claim(size, 10), contentLength: -1},
		{name: "connect stream h2c", client: kvtest.H2CClient, procedure: batch, contentType: "application/connect+proto", head: claim(size, 10), contentLength: -1},
		{name: "connect unary http1", client: kvtest.HTTP1Client, procedure: put, contentType: "application/proto", head: make([]byte, 10), contentLength: int64(size)},
	}
}

// TestDeclaredOversizeMessageRefusedEarly claims a 2 GiB message, sends a
// little of it and then nothing: kvgate answers RESOURCE_EXHAUSTED at once,
// with the stall bound and the deadline far off.
func TestDeclaredOversizeMessageRefusedEarly(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{
		DefaultTimeout: time.Minute,
		Transport:      app.TransportConfig{Limits: httpserver.Limits{BodyStallTimeout: time.Minute}},
	})
	for _, c := range rawCalls(true) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if code := c.send(t, st); code != connect.CodeResourceExhausted.String() {
				t.Errorf("code %q, want resource_exhausted", code)
			}
		})
	}
}

// TestStalledBodyCutOff sends part of a message that fits and then
// nothing: the stall bound cuts it off with DEADLINE_EXCEEDED, or, where
// the protocol cannot answer any more, closes the connection.
func TestStalledBodyCutOff(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{
		DefaultTimeout: time.Minute,
		Transport:      app.TransportConfig{Limits: httpserver.Limits{BodyStallTimeout: 200 * time.Millisecond}},
	})
	for _, c := range rawCalls(false) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if code := c.send(t, st); code != "" && code != connect.CodeDeadlineExceeded.String() {
				t.Errorf("code %q, want deadline_exceeded", code)
			}
		})
	}
}

// TestStalledBodyEndsAtDeadline sends part of a unary request and then
// nothing, with the stall bound far off: the RPC's deadline ends it.
func TestStalledBodyEndsAtDeadline(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{
		DefaultTimeout: 200 * time.Millisecond,
		Transport:      app.TransportConfig{Limits: httpserver.Limits{BodyStallTimeout: time.Minute}},
	})
	c := rawCalls(false)[0]
	if code := c.send(t, st); code != connect.CodeDeadlineExceeded.String() {
		t.Errorf("code %q, want deadline_exceeded", code)
	}
}
