package auth_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
)

// TestCopyItemsRightsAndScope checks CopyItems, which names two stores:
// the token needs the read and the write right, and both stores in its
// scope; refused calls reach nothing upstream.
func TestCopyItemsRightsAndScope(t *testing.T) {
	t.Parallel()
	path := tokensPath(t)
	copier := token{name: "copier", secret: "kvg-test-copier-41a9d0", stores: []string{"demo", "staging-*"}, allow: []string{"read", "write"}}
	writeTokens(t, path, reader, writer, copier)
	st := kvtest.Start(t, kvtest.Options{Auth: auth.Config{TokensFile: path}})
	for _, tc := range []struct {
		name           string
		tok            token
		source, target string
		want           connect.Code
	}{
		{"read right only", reader, "demo", "staging-eu", connect.CodePermissionDenied},
		{"write right only", writer, "staging-a", "staging-b", connect.CodePermissionDenied},
		{"source out of scope", copier, "prod", "staging-eu", connect.CodePermissionDenied},
		{"target out of scope", copier, "demo", "prod", connect.CodePermissionDenied},
		{"both in scope", copier, "demo", "staging-eu", connect.CodeNotFound}, // the source does not exist
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, st, protocols[1], credentials{bearer: tc.tok.secret}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			before := st.Requests()
			s, err := c.CopyItems(ctx, &kvv1.CopyItemsRequest{SourceStoreId: tc.source, TargetStoreId: tc.target})
			if err == nil {
				_, err = testutil.ReadStream(s.Receive)
			}
			testutil.WantCode(t, "CopyItems", err, tc.want)
			if n := st.Requests() - before; tc.want == connect.CodePermissionDenied && n != 0 {
				t.Errorf("a refused copy sent %d requests upstream", n)
			}
		})
	}
}
