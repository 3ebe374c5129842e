package soak

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

var flagDeletes = flag.Int("soak.deletes", 2_000, "keys the DeleteKeys phase deletes by prefix, and again by list")

// deleteStore is the store of the DeleteKeys phase.
const deleteStore = "soak-delete"

// TestSoakDeleteKeys is the fault soak's DeleteKeys phase: -soak.deletes
// keys deleted by prefix and as many by lists of keys, through the faults
// of -soak.faults. A deletion that ends early (a 429 spends Fastly's
// budget, a DELETE keeps failing, a listing page is lost) is resumed from
// its cursor, as a client would. Then, with the faults off, the store is
// read directly: every key reported deleted or not found is gone; every
// key of the selection not reported so is accounted for, as failed or
// still present; and the keys outside the selection are untouched.
func TestSoakDeleteKeys(t *testing.T) {
	n := *flagDeletes
	faults, logs := beginPhase(t)
	logger := slog.New(logs)
	st := kvtest.Start(t, kvtest.Options{
		Retry:  upstream.RetryPolicy{MaxAttempts: 8, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond},
		Writes: app.WriteConfig{DeleteConcurrency: service.DefaultDeleteConcurrency},
		Store:  localstore.Config{Logger: logger},
		Logger: logger,
	})
	ctx := t.Context()
	var prefixKeys, listKeys, keep []string
	for i := range n {
		prefixKeys = append(prefixKeys, fmt.Sprintf("del/p/%06d", i))
		listKeys = append(listKeys, fmt.Sprintf("del/l/%06d", i))
		if i%100 == 0 {
			keep = append(keep, fmt.Sprintf("keep/%06d", i))
		}
	}
	fillDirect(t, st, slices.Concat(prefixKeys, listKeys, keep))
	httpClient := kvtest.H2CClient()
	client := st.NewClient(httpClient, connecthttp.WithGRPC())

	st.Store.SetFaults(faults)
	start := time.Now()
	var acct deleteAccount
	acct.run(t, ctx, client, &kvv1.DeleteKeysRequest{StoreId: deleteStore, Prefix: "del/p/"})
	for i := 0; i < len(listKeys); i += service.MaxDeleteKeys / 4 {
		acct.run(t, ctx, client, &kvv1.DeleteKeysRequest{StoreId: deleteStore, Keys: listKeys[i:min(i+service.MaxDeleteKeys/4, len(listKeys))]})
	}
	st.Store.SetFaults(localstore.Faults{})
	t.Logf("delete: %v; %d calls (%d resumed: %s); %d deleted, %d not found, %d failed",
		time.Since(start).Round(time.Millisecond), acct.calls, acct.resumed, formatCounts(acct.endings),
		len(acct.deleted), len(acct.notFound), len(acct.failed))
	checkLogs(t, logs)

	present := make(map[string]bool)
	for _, k := range listAll(t.Context(), t, st.Client, deleteStore) {
		present[k] = true
	}
	p := &problems{t: t}
	for k := range acct.deleted {
		if present[k] {
			p.add("reported deleted but present", "%q", k)
		}
	}
	for k := range acct.notFound {
		if present[k] {
			p.add("reported not found but present", "%q", k)
		}
	}
	left := 0
	for _, k := range slices.Concat(prefixKeys, listKeys) {
		reported := acct.deleted[k] || acct.notFound[k] || acct.failed[k]
		switch {
		case !reported && !present[k]:
			p.add("gone without a report", "%q", k)
		case present[k] && !acct.failed[k]:
			p.add("present without a failure", "%q", k)
		case present[k]:
			left++
		}
	}
	for _, k := range keep {
		if !present[k] {
			p.add("outside the selection and deleted", "%q", k)
		}
	}
	t.Logf("verify: %d keys of the selections left, each reported failed; problems: %s", left, p.summary())
	if err := st.Shutdown(); err != nil {
		t.Errorf("kvgate shutdown: %v", err)
	}
	httpClient.CloseIdleConnections()
}

// deleteAccount is what every DeleteKeys call of the phase reported.
type deleteAccount struct {
	deleted, notFound, failed map[string]bool
	calls, resumed            int
	endings                   map[string]int
}

// maxResumes bounds the calls one deletion may take: it only fails the
// test when a deletion makes no progress at all.
const maxResumes = 500

// run deletes what req selects, resuming from the cursor whenever a call
// ends early, until a call ends done.
func (a *deleteAccount) run(t *testing.T, ctx context.Context, client kvv1connect.KVStoreServiceClient, req *kvv1.DeleteKeysRequest) {
	t.Helper()
	if a.deleted == nil {
		a.deleted, a.notFound, a.failed, a.endings = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]int{}
	}
	for range maxResumes {
		a.calls++
		cursor, wait, done := a.call(ctx, client, req)
		if done {
			return
		}
		a.resumed++
		req.Cursor = cursor
		select {
		case <-time.After(min(wait, 3*time.Second)):
		case <-ctx.Done():
			t.Fatalf("deleting %v: %v", req.GetPrefix(), ctx.Err())
		}
	}
	t.Fatalf("the deletion (prefix %q, %d keys) did not end within %d calls", req.GetPrefix(), len(req.GetKeys()), maxResumes)
}

// call makes one DeleteKeys call and accounts its messages; it returns
// where to resume and after how long, unless the call ended done.
func (a *deleteAccount) call(ctx context.Context, client kvv1connect.KVStoreServiceClient, req *kvv1.DeleteKeysRequest) (cursor string, wait time.Duration, done bool) {
	cursor, wait = req.GetCursor(), 10*time.Millisecond
	stream, err := client.DeleteKeys(ctx, req)
	if err == nil {
		defer stream.Close()
		for {
			var msg *kvv1.DeleteKeysResponse
			msg, err = stream.Receive()
			if err != nil {
				break
			}
			for _, k := range msg.GetDeleted() {
				a.deleted[k] = true
			}
			for _, k := range msg.GetNotFound() {
				a.notFound[k] = true
			}
			for _, f := range msg.GetFailures() {
				a.failed[f.GetKey()] = true
			}
			if msg.GetDone() {
				a.endings["done"]++
				return "", 0, true
			}
			cursor = msg.GetCursor()
		}
	}
	cerr, ok := errors.AsType[*connect.Error](err)
	if !ok {
		a.endings["no connect error"]++
		return cursor, wait, false
	}
	a.endings[cerr.Code().String()]++
	for _, d := range cerr.Details() {
		switch m, _ := connectproto.UnmarshalErrorDetail(d); m := m.(type) {
		case *kvv1.DeleteKeysResponse:
			cursor = m.GetCursor()
		case *errdetails.RetryInfo:
			wait = m.GetRetryDelay().AsDuration()
		}
	}
	return cursor, wait, false
}

// fillDirect writes keys into the soak's delete store with batch PUTs,
// straight to the store.
func fillDirect(t *testing.T, st *kvtest.Stack, keys []string) {
	t.Helper()
	for i := 0; i < len(keys); i += 1000 {
		var body []byte
		for _, k := range keys[i:min(i+1000, len(keys))] {
			body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: k, Value: []byte("v")})
		}
		res, err := st.Client.PutBatch(t.Context(), deleteStore, body)
		if err != nil || len(res.LineErrors) > 0 {
			t.Fatalf("filling %s: %v %v", deleteStore, err, res)
		}
	}
}
