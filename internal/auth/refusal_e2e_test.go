package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
)

// The test tokens. Their secrets are distinctive, so that a scan for them
// finds nothing but them.
var (
	reader = token{name: "reader", secret: "kvg-test-reader-6f0d1c", stores: []string{"demo"}, allow: []string{"read"}}
	writer = token{name: "writer", secret: "kvg-test-writer-93ab7e", stores: []string{"staging-*"}, allow: []string{"write", "delete"}}
)

// TestRefusedBeforeAnyWork calls every RPC over every protocol without
// credentials, with wrong ones, without the RPC's right and on a store
// outside the token's: each is refused with the right code, a message that
// names neither the token nor its stores, and nothing reaches the upstream.
func TestRefusedBeforeAnyWork(t *testing.T) {
	t.Parallel()
	path := tokensPath(t)
	writeTokens(t, path, reader, writer)
	var log testutil.LockedBuffer
	st := kvtest.Start(t, kvtest.Options{Auth: auth.Config{TokensFile: path}, Logger: logTo(&log)})

	// lacking returns a token without r, and a store it may use.
	lacking := func(r string) (token, string) {
		if r == "read" {
			return writer, "staging-eu"
		}
		return reader, "demo"
	}
	// holding returns a token with r, and a store it may not use.
	holding := func(r string) (token, string) {
		if r == "read" {
			return reader, "demo-2"
		}
		return writer, "staging"
	}
	for _, proto := range protocols {
		for _, r := range rpcs {
			without, inScope := lacking(r.right)
			with, outOfScope := holding(r.right)
			cases := []struct {
				name  string
				creds credentials
				store string
				want  connect.Code
			}{
				{"no credentials", credentials{}, "demo", connect.CodeUnauthenticated},
				{"unknown token", credentials{bearer: "kvg-test-unknown-55e2"}, "demo", connect.CodeUnauthenticated},
				{"other scheme", credentials{authorization: "Basic " + reader.secret}, "demo", connect.CodeUnauthenticated},
				{"empty bearer", credentials{authorization: "Bearer "}, "demo", connect.CodeUnauthenticated},
				{"right missing", credentials{bearer: without.secret}, inScope, connect.CodePermissionDenied},
				{"store out of scope", credentials{bearer: with.secret}, outOfScope, connect.CodePermissionDenied},
			}
			for _, tc := range cases {
				t.Run(proto.name+"/"+r.name+"/"+tc.name, func(t *testing.T) {
					t.Parallel()
					var seen testutil.LockedBuffer
					c := newClient(t, st, proto, tc.creds, &seen)
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					cerr := testutil.WantCode(t, r.name, r.call(ctx, c, tc.store), tc.want)
					for _, secret := range []string{reader.secret, writer.secret, "demo", "staging"} {
						if strings.Contains(cerr.Message(), secret) {
							t.Errorf("message %q names %q", cerr.Message(), secret)
						}
					}
					if tc.want == connect.CodeUnauthenticated && proto.name == "connect" &&
						!strings.Contains(seen.String(), "Www-Authenticate: Bearer") {
						t.Errorf("no WWW-Authenticate challenge in the response:\n%s", seen.String())
					}
				})
			}
		}
	}
	t.Cleanup(func() {
		if n := st.Requests(); n != 0 {
			t.Errorf("the upstream received %d requests, want 0", n)
		}
	})
}

// TestScopedCallsGoThrough calls every RPC with a token holding its right
// on a store in its scope (exact and by pattern): each gets through, and
// the RPC log names the token, never its secret.
func TestScopedCallsGoThrough(t *testing.T) {
	t.Parallel()
	path := tokensPath(t)
	all := token{name: "all", secret: "kvg-test-all-0c4d12", stores: []string{"demo", "staging-*"}, allow: []string{"read", "write", "delete"}}
	writeTokens(t, path, reader, writer, all)
	var log testutil.LockedBuffer
	st := kvtest.Start(t, kvtest.Options{Auth: auth.Config{TokensFile: path}, Logger: logTo(&log)})
	for _, proto := range protocols {
		for _, r := range rpcs {
			for _, store := range []string{"demo", "staging-eu"} {
				t.Run(proto.name+"/"+r.name+"/"+store, func(t *testing.T) {
					t.Parallel()
					c := newClient(t, st, proto, credentials{bearer: all.secret}, nil)
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if err := r.call(ctx, c, store); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
						t.Errorf("%s: %v", r.name, err)
					}
				})
			}
		}
	}
	t.Cleanup(func() {
		if st.Requests() == 0 {
			t.Error("nothing reached the upstream")
		}
		if !strings.Contains(log.String(), "caller=all") {
			t.Errorf("the RPC log does not name the caller:\n%s", log.String())
		}
		if strings.Contains(log.String(), all.secret) {
			t.Error("the log holds the token")
		}
	})
}

// TestTokenRate checks a token's request rate: calls past its burst are
// refused with RESOURCE_EXHAUSTED and a RetryInfo, before the upstream.
func TestTokenRate(t *testing.T) {
	t.Parallel()
	path := tokensPath(t)
	slow := token{name: "slow", secret: "kvg-test-slow-8e1f", stores: []string{"*"}, allow: []string{"read"}, rate: "0.001", burst: "2"}
	writeTokens(t, path, slow, reader)
	st := kvtest.Start(t, kvtest.Options{Auth: auth.Config{TokensFile: path}})
	for _, proto := range protocols[:2] {
		t.Run(proto.name, func(t *testing.T) {
			c := newClient(t, st, proto, credentials{bearer: slow.secret}, nil)
			ctx := context.Background()
			before := st.Requests()
			get := rpcs[0]
			if proto.name == "connect" { // the burst is shared by the token's callers
				for range 2 {
					testutil.WantCode(t, "GetItem within the burst", get.call(ctx, c, "s"), connect.CodeNotFound)
				}
				before = st.Requests()
			}
			cerr := testutil.WantCode(t, "GetItem past the rate", get.call(ctx, c, "s"), connect.CodeResourceExhausted)
			var retry *errdetails.RetryInfo
			for _, d := range cerr.Details() {
				if m, err := connectproto.UnmarshalErrorDetail(d); err == nil {
					if ri, ok := m.(*errdetails.RetryInfo); ok {
						retry = ri
					}
				}
			}
			if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
				t.Errorf("no RetryInfo with a delay in %v", cerr.Details())
			}
			if n := st.Requests(); n != before {
				t.Errorf("the refused call reached the upstream (%d requests, was %d)", n, before)
			}
			// Another token has a rate of its own.
			other := newClient(t, st, proto, credentials{bearer: reader.secret}, nil)
			testutil.WantCode(t, "another token's call", get.call(ctx, other, "demo"), connect.CodeNotFound)
		})
	}
}
