package app

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestRun runs kvgate in this process, as its main does, on the embedded
// local store kept in memory: an item written through the gateway reads
// back, and cancelling the context shuts kvgate down cleanly.
func TestRun(t *testing.T) {
	t.Parallel()
	client, stop := runKvgate(t, func(*Config) {})
	ctx := context.Background()
	if _, err := client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "greeting", Value: []byte("hello")}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	res, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "greeting"})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	if got := string(res.GetItem().GetValue()); got != "hello" {
		t.Errorf("GetItem value = %q, want hello", got)
	}
	if _, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "absent"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("GetItem of an absent key: %v, want NotFound", err)
	}
	stop()
}

// TestEmbeddedStoreFailuresNameIt checks that a failure of the embedded
// local store is reported as the local store's, not Fastly's.
func TestEmbeddedStoreFailuresNameIt(t *testing.T) {
	t.Parallel()
	faults, err := localstore.ParseFaults("503=1")
	if err != nil {
		t.Fatal(err)
	}
	client, stop := runKvgate(t, func(cfg *Config) {
		cfg.StoreFaults = faults
		cfg.Retry.MaxAttempts = 1
	})
	defer stop()
	_, err = client.GetItem(context.Background(), &kvv1.GetItemRequest{StoreId: "s", Key: "k"})
	if ce, ok := errors.AsType[*connect.Error](err); !ok || ce.Code() != connect.CodeUnavailable ||
		ce.Message() != "the local store is unavailable; retry later" {
		t.Errorf("GetItem while the embedded store fails: %v, want UNAVAILABLE naming the local store", err)
	}
}

// runKvgate runs kvgate with its default flags, changed by configure, on
// the embedded local store in memory, and returns a Connect client of it
// and a function that stops it and checks that it shut down cleanly.
func runKvgate(t *testing.T, configure func(*Config)) (kvv1connect.KVStoreServiceClient, func()) {
	t.Helper()
	fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
	cfg, err := GatewayFlags(fs, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", ""
	configure(cfg)
	ready := make(chan net.Addr, 1)
	cfg.Ready = func(addr net.Addr) { ready <- addr }

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, *cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("Run returned before serving: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("kvgate did not become ready")
	}
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	client := kvv1connect.NewKVStoreServiceClient(connect.NewClient(connecthttp.NewTransport(hc, "http://"+addr.String())))
	var once sync.Once
	return client, func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(time.Minute):
				t.Error("Run did not return after ctx ended")
			}
		})
	}
}
