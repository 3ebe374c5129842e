package app

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
)

// TestRun runs kvgate in this process, as its main does, on the embedded
// local store kept in memory: an item written through the gateway reads
// back, and cancelling the context shuts kvgate down cleanly.
func TestRun(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
	cfg, err := GatewayFlags(fs, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", ""
	ready := make(chan net.Addr, 1)
	cfg.Ready = func(addr net.Addr) { ready <- addr }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	defer hc.CloseIdleConnections()
	client := kvv1connect.NewKVStoreServiceClient(connect.NewClient(connecthttp.NewTransport(hc, "http://"+addr.String())))
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

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after ctx ended")
	}
}
