package auth_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"

	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// keyRecorder records the Fastly-Key of every request the local store
// receives.
type keyRecorder struct {
	mu   sync.Mutex
	keys []string
}

func (k *keyRecorder) record(r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append(k.keys, r.Header.Get("Fastly-Key"))
}

func (k *keyRecorder) seen() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.keys)
}

// TestPassThrough checks that in pass-through mode every upstream request
// an RPC causes carries its caller's own Fastly token, for every RPC
// shape; that a caller without one is refused before the upstream; and
// that with a token file as well, both are needed.
func TestPassThrough(t *testing.T) {
	t.Parallel()
	path := tokensPath(t)
	all := token{name: "all", secret: "kvg-test-pt-all-77aa", stores: []string{"*"}, allow: []string{"read", "write", "delete"}}
	writeTokens(t, path, all)
	for _, tc := range []struct {
		name string
		cfg  auth.Config
		// bearer is what callers send beside their Fastly token.
		bearer string
	}{
		{"pass-through alone", auth.Config{FastlyTokenPassthrough: true}, ""},
		{"with bearer tokens", auth.Config{FastlyTokenPassthrough: true, TokensFile: path}, all.secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var keys keyRecorder
			st := kvtest.Start(t, kvtest.Options{Auth: tc.cfg, Store: localstore.Config{OnRequest: keys.record}})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, proto := range protocols {
				fastlyKey := "fastly-key-of-caller-" + proto.name
				c := newClient(t, st, proto, credentials{bearer: tc.bearer, fastlyKey: fastlyKey}, nil)
				from := len(keys.seen())
				for _, r := range rpcs {
					if err := r.call(ctx, c, "s"); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
						t.Errorf("%s %s: %v", proto.name, r.name, err)
					}
				}
				seen := keys.seen()[from:]
				if len(seen) < len(rpcs) {
					t.Errorf("%s: the upstream saw %d requests, want at least %d", proto.name, len(seen), len(rpcs))
				}
				for _, k := range seen {
					if k != fastlyKey {
						t.Errorf("%s: the upstream saw Fastly-Key %q, want %q", proto.name, k, fastlyKey)
					}
				}
			}
			n := st.Requests()
			without := newClient(t, st, protocols[0], credentials{bearer: tc.bearer}, nil)
			for _, r := range rpcs {
				if code := connect.CodeOf(r.call(ctx, without, "s")); code != connect.CodeUnauthenticated {
					t.Errorf("%s without a Fastly token: %v, want unauthenticated", r.name, code)
				}
			}
			if tc.bearer != "" {
				noBearer := newClient(t, st, protocols[0], credentials{fastlyKey: "fastly-key-of-caller-x"}, nil)
				if code := connect.CodeOf(rpcs[0].call(ctx, noBearer, "s")); code != connect.CodeUnauthenticated {
					t.Errorf("a Fastly token without a bearer token: %v, want unauthenticated", code)
				}
			}
			if got := st.Requests(); got != n {
				t.Errorf("refused calls reached the upstream: %d requests, was %d", got, n)
			}
		})
	}
}

// TestInfraPolicies checks health checks and reflection: open by default
// even with a token file, and closed to callers without a valid token
// when their policy says token.
func TestInfraPolicies(t *testing.T) {
	t.Parallel()
	path := tokensPath(t)
	writeTokens(t, path, reader)
	for _, tc := range []struct {
		name            string
		health, reflect auth.Policy
		openHealth      bool
		openReflection  bool
	}{
		{"default", "", "", true, true},
		{"health closed", auth.PolicyToken, "", false, true},
		{"reflection closed", "", auth.PolicyToken, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{Auth: auth.Config{TokensFile: path, Health: tc.health, Reflection: tc.reflect}})
			for _, creds := range []credentials{{}, {bearer: "kvg-test-wrong-00"}, {bearer: reader.secret}} {
				valid := creds.bearer == reader.secret
				if got := grpcStatus(t, st, "/grpc.health.v1.Health/Check", &reflectionpb.ServerReflectionRequest{}, creds); (got == "0") != (tc.openHealth || valid) {
					t.Errorf("health check with %+v: grpc-status %s", creds, got)
				}
				req := &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}
				if got := grpcStatus(t, st, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", req, creds); (got == "0") != (tc.openReflection || valid) {
					t.Errorf("reflection with %+v: grpc-status %s", creds, got)
				}
			}
		})
	}
}

// grpcStatus makes a gRPC call of procedure with one request message (an
// empty message is a valid HealthCheckRequest) and returns its status.
func grpcStatus(t *testing.T, st *kvtest.Stack, procedure string, msg proto.Message, creds credentials) string {
	t.Helper()
	body, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(body)))
	frame = append(frame, body...)
	req, err := http.NewRequest(http.MethodPost, st.URL+procedure, bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	creds.apply(req.Header)
	hc := kvtest.H2CClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		return s // a trailers-only answer
	}
	return resp.Trailer.Get("Grpc-Status")
}
