// This example is a small kvgate client built on the generated Go client: it
// writes one item, reads it back, lists the keys that share its prefix and
// shows how an RPC error carries a Connect code.
//
// Start kvgate (it serves an in-process local store when FASTLY_API_TOKEN is
// unset), then, from the repository root:
//
//	go run ./examples/goclient -addr http://127.0.0.1:8080 -store demo
//
// Against Fastly, -store is the KV Store's id (for example
// "iaa48y0oxw13s12xpfdkk9").
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
)

func main() {
	addr := flag.String("addr", "http://127.0.0.1:8080", "kvgate's base URL")
	store := flag.String("store", "demo", "KV Store id")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline for the whole run")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	err := run(ctx, *addr, *store)
	cancel()
	if err != nil {
		// connect.CodeOf finds the *connect.Error in err's chain; errors
		// that never reached kvgate (a refused connection, say) are
		// CodeUnavailable or CodeUnknown.
		fmt.Fprintf(os.Stderr, "error: code=%s: %v\n", connect.CodeOf(err), err)
		os.Exit(1)
	}
}

func run(ctx context.Context, baseURL, store string) error {
	// README:begin go
	// One client serves every call and is safe for concurrent use. The
	// transport speaks the Connect protocol with binary Protobuf by
	// default; connecthttp.WithGRPC() or WithGRPCWeb() select the other
	// protocols kvgate serves on the same port.
	client := kvv1connect.NewKVStoreServiceClient(
		connect.NewClient(connecthttp.NewTransport(http.DefaultClient, baseURL)),
	)

	// PutItem overwrites the item (PUT_MODE_UNSPECIFIED). The metadata is
	// an opaque string of up to 2000 bytes stored beside the value.
	if _, err := client.PutItem(ctx, &kvv1.PutItemRequest{
		StoreId:  store,
		Key:      "greeting",
		Value:    []byte("hello"),
		Metadata: `{"lang":"en"}`,
	}); err != nil {
		return fmt.Errorf("PutItem: %w", err)
	}

	// GetItem returns the value, the metadata and the generation marker,
	// which a later PutItem or DeleteItem can send as if_generation_match
	// to change the item only if nobody else has.
	got, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "greeting"})
	if err != nil {
		return fmt.Errorf("GetItem: %w", err)
	}
	// README:end go
	item := got.GetItem()
	fmt.Printf("key: %s\n", item.GetKey())
	fmt.Printf("value: %s\n", item.GetValue())
	fmt.Printf("metadata: %s\n", item.GetMetadata())
	fmt.Printf("generation: %d\n", item.GetGeneration())

	// ListKeys returns one page of keys in byte order; pass NextCursor back
	// as Cursor while it is non-empty to read the rest.
	var keys []string
	req := &kvv1.ListKeysRequest{StoreId: store, Prefix: "gre"}
	for {
		page, err := client.ListKeys(ctx, req)
		if err != nil {
			return fmt.Errorf("ListKeys: %w", err)
		}
		keys = append(keys, page.GetKeys()...)
		if page.GetNextCursor() == "" {
			break
		}
		req.Cursor = page.GetNextCursor()
	}
	fmt.Printf("keys: %s\n", strings.Join(keys, ", "))

	// A missing item is an error with CodeNotFound, not an empty response:
	// branch on the code rather than on the message text.
	_, err = client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "no-such-key"})
	switch code := connect.CodeOf(err); {
	case err == nil:
		fmt.Println("missing: found")
	case code == connect.CodeNotFound:
		fmt.Printf("missing: %s\n", code)
	default:
		return fmt.Errorf("GetItem of a missing key: %w", err)
	}
	return nil
}
