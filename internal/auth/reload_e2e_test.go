package auth_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
)

var (
	before = token{name: "before", secret: "kvg-test-before-1a2b", stores: []string{"*"}, allow: []string{"read", "write"}}
	after  = token{name: "after", secret: "kvg-test-after-3c4d", stores: []string{"*"}, allow: []string{"read", "write"}}
)

// waitFor polls ok until it holds, failing the test after a generous
// while.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// codeOf is the code of a GetItem by c: not found when it got through.
func codeOf(c kvv1connect.KVStoreServiceClient) connect.Code {
	_, err := c.GetItem(context.Background(), &kvv1.GetItemRequest{StoreId: "s", Key: "absent"})
	return connect.CodeOf(err)
}

// TestTokenFileChanges checks that kvgate follows its token file: a batch
// stream opened with a token keeps working after the file drops that
// token; the new file's token works and the dropped one no longer does; a
// broken file keeps the tokens in use and the log says why.
func TestTokenFileChanges(t *testing.T) {
	t.Parallel()
	path := tokensPath(t)
	writeTokens(t, path, before)
	var log testutil.LockedBuffer
	st := kvtest.Start(t, kvtest.Options{
		Auth:   auth.Config{TokensFile: path, PollInterval: 10 * time.Millisecond},
		Logger: logTo(&log),
	})
	proto := protocols[1] // gRPC over HTTP/2: the stream shares its connection with later calls
	old := newClient(t, st, proto, credentials{bearer: before.secret}, nil)
	fresh := newClient(t, st, proto, credentials{bearer: after.secret}, nil)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := old.BatchPutItems(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(key string, mode kvv1.PutMode) {
		t.Helper()
		msg := &kvv1.BatchPutItemsRequest{StoreId: "s", Items: []*kvv1.BatchItem{{Key: key, Value: []byte("v"), Mode: mode}}}
		if err := stream.Send(msg); err != nil {
			t.Fatalf("Send %s: %v", key, err)
		}
	}
	// An append goes upstream at once, on its own: k1 reaching the store
	// shows the stream got past authentication before the file changes.
	send("k1", kvv1.PutMode_PUT_MODE_APPEND)
	waitFor(t, "the stream's first item is written", func() bool {
		_, err := st.Client.GetItem(ctx, "s", "k1")
		return err == nil
	})

	writeTokens(t, path, after)
	waitFor(t, "the new token works", func() bool { return codeOf(fresh) == connect.CodeNotFound })
	if code := codeOf(old); code != connect.CodeUnauthenticated {
		t.Errorf("a dropped token's new call: %v, want unauthenticated", code)
	}
	send("k2", kvv1.PutMode_PUT_MODE_UNSPECIFIED)

	writeFile(t, path, "tokens:\n  - name: broken\n    sha256: nothex\n")
	waitFor(t, "the broken file is rejected", func() bool { return strings.Contains(log.String(), "token file rejected") })
	if code := codeOf(fresh); code != connect.CodeNotFound {
		t.Errorf("after a broken file the token in use gets %v", code)
	}
	send("k3", kvv1.PutMode_PUT_MODE_UNSPECIFIED)
	res, err := stream.CloseAndReceive()
	if err != nil {
		t.Fatalf("the stream opened before the reloads: %v", err)
	}
	if res.GetWritten() != 3 {
		t.Errorf("written = %d, want 3", res.GetWritten())
	}
	if strings.Contains(log.String(), "nothex") {
		t.Error("the log quotes the file's content")
	}
}

// TestReloadTokens checks the reload SIGHUP triggers, with calls in
// flight: none of them is refused while the file is reloaded over and
// over, a new token works at once after the reload, and a broken file
// keeps the tokens in use.
func TestReloadTokens(t *testing.T) {
	t.Parallel()
	path := tokensPath(t)
	writeTokens(t, path, before)
	// No polling: only Reload reads the file.
	st := kvtest.Start(t, kvtest.Options{Auth: auth.Config{TokensFile: path, PollInterval: time.Hour}})
	proto := protocols[0]
	old := newClient(t, st, proto, credentials{bearer: before.secret}, nil)
	fresh := newClient(t, st, proto, credentials{bearer: after.secret}, nil)

	writeTokens(t, path, before, after)
	if code := codeOf(fresh); code != connect.CodeUnauthenticated {
		t.Fatalf("a token not yet loaded: %v", code)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code := codeOf(old); code != connect.CodeNotFound {
					t.Errorf("a call during reloads: %v", code)
					return
				}
			}
		})
	}
	for range 20 {
		if err := st.Gateway.ReloadTokens(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if code := codeOf(fresh); code != connect.CodeNotFound {
		t.Errorf("the new token after a reload: %v", code)
	}

	writeFile(t, path, "tokens: [")
	if err := st.Gateway.ReloadTokens(); err == nil {
		t.Error("a broken file reloaded without error")
	}
	for _, c := range []kvv1connect.KVStoreServiceClient{old, fresh} {
		if code := codeOf(c); code != connect.CodeNotFound {
			t.Errorf("after a broken file: %v", code)
		}
	}
}
