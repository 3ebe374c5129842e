//go:build unix

package interop

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	kvv1 "github.com/kvgate/kvgate/test/interop/gen/fastly/kv/v1"
)

// decodeJSONStream decodes grpcurl's output of a server stream, one JSON
// object per message, loosely (into maps) so that the JSON types
// themselves are checked.
func decodeJSONStream(t *testing.T, what, out string) []map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	var msgs []map[string]any
	for {
		var msg map[string]any
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return msgs
		} else if err != nil {
			t.Fatalf("%s: message %d is not JSON (%v); grpcurl printed:\n%s", what, len(msgs), err, out)
		}
		msgs = append(msgs, msg)
	}
}

// TestGRPCurlItems drives the multi-key RPCs with grpcurl, as the README's
// examples do: a server stream of JSON messages each, and a watch that
// runs until grpcurl's -max-time ends it.
func TestGRPCurlItems(t *testing.T) {
	t.Parallel()
	grpcurl := grpcurlPath(t)
	p := startKVGate(t, t.TempDir())
	kv := kvv1.NewKVStoreServiceClient(dial(t, p.Addr))
	const store = "curl-items"
	ctx := testContext(t)
	items := putItems(ctx, t, kv, store, "g/a", "hello", "g/b", "")

	t.Run("GetItems", func(t *testing.T) {
		t.Parallel()
		out, errOut, err := grpcurlStreams(testContext(t), grpcurl, nil, "-plaintext",
			"-d", `{"storeId":"curl-items","keys":["g/a","nope","g/a"]}`, p.Addr, kvServiceName+"/GetItems")
		if err != nil {
			t.Fatalf("grpcurl GetItems: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		}
		msgs := decodeJSONStream(t, "grpcurl GetItems", out)
		if len(msgs) != 3 {
			t.Fatalf("grpcurl GetItems printed %d messages, want 3:\n%s", len(msgs), out)
		}
		seen := map[float64]bool{}
		for _, msg := range msgs {
			// index is a uint32, a JSON number; proto3 JSON leaves out
			// the default 0.
			index, _ := msg["index"].(float64)
			if msg["index"] != nil && index == 0 {
				t.Errorf("index = %#v, want a non-zero JSON number, or none for 0", msg["index"])
			}
			seen[index] = true
			switch index {
			case 1:
				if msg["key"] != "nope" || msg["absent"] != true {
					t.Errorf("message for index 1 = %v, want key nope, absent true", msg)
				}
			default:
				item, _ := msg["item"].(map[string]any)
				// "aGVsbG8=" is base64 for "hello"; uint64s are
				// decimal strings.
				want := map[string]any{
					"key": "g/a", "value": "aGVsbG8=", "metadata": "meta-g/a", "size": "5",
					"generation": strconv.FormatUint(items["g/a"].GetGeneration(), 10),
				}
				if msg["key"] != "g/a" {
					t.Errorf("message for index %v has key %#v, want g/a", index, msg["key"])
				}
				for field, value := range want {
					if item[field] != value {
						t.Errorf("message for index %v: item.%s = %#v, want %#v; grpcurl printed:\n%s", index, field, item[field], value, out)
					}
				}
				if _, ok := item["lastModified"].(string); !ok {
					t.Errorf("item.lastModified = %#v, want an RFC 3339 string", item["lastModified"])
				}
			}
		}
		if len(seen) != 3 {
			t.Errorf("grpcurl GetItems answered indexes %v, want 0, 1 and 2", seen)
		}
	})

	t.Run("WatchItemsInitialState", func(t *testing.T) {
		t.Parallel()
		// The watch never ends on its own: grpcurl's -max-time sets the
		// call's deadline, which ends it after the initial state.
		out, errOut, err := grpcurlStreams(testContext(t), grpcurl, nil, "-plaintext", "-max-time", "3",
			"-d", `{"storeId":"curl-items","keys":["g/a","g/none"],"sendInitialState":true}`,
			p.Addr, kvServiceName+"/WatchItems")
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || !strings.Contains(errOut, "DeadlineExceeded") {
			t.Errorf("grpcurl WatchItems: err = %v, want a non-zero exit and DeadlineExceeded; stderr:\n%s", err, errOut)
		}
		msgs := decodeJSONStream(t, "grpcurl WatchItems", out)
		if len(msgs) != 1 {
			t.Fatalf("grpcurl WatchItems printed %d messages, want the initial state alone:\n%s", len(msgs), out)
		}
		first := msgs[0]
		if first["initial"] != true {
			t.Errorf("initial = %#v, want true", first["initial"])
		}
		if _, ok := first["observedAt"].(string); !ok {
			t.Errorf("observedAt = %#v, want an RFC 3339 string", first["observedAt"])
		}
		changes, _ := first["changes"].([]any)
		if len(changes) != 1 {
			t.Fatalf("changes = %v, want one, g/a PRESENT; grpcurl printed:\n%s", first["changes"], out)
		}
		change, _ := changes[0].(map[string]any)
		item, _ := change["item"].(map[string]any)
		if change["type"] != "CHANGE_TYPE_PRESENT" || change["key"] != "g/a" {
			t.Errorf("change = %v, want type CHANGE_TYPE_PRESENT, key g/a", change)
		}
		if item["value"] != nil || item["size"] != "5" || item["generation"] != strconv.FormatUint(items["g/a"].GetGeneration(), 10) {
			t.Errorf("change.item = %v, want no value, size \"5\" and generation %d", item, items["g/a"].GetGeneration())
		}
	})

	t.Run("DeleteKeysDryRun", func(t *testing.T) {
		t.Parallel()
		out, errOut, err := grpcurlStreams(testContext(t), grpcurl, nil, "-plaintext",
			"-d", `{"storeId":"curl-items","prefix":"g/","dryRun":true}`, p.Addr, kvServiceName+"/DeleteKeys")
		if err != nil {
			t.Fatalf("grpcurl DeleteKeys: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		}
		msgs := decodeJSONStream(t, "grpcurl DeleteKeys", out)
		if len(msgs) == 0 {
			t.Fatalf("grpcurl DeleteKeys printed nothing")
		}
		var deleted []string
		for _, msg := range msgs {
			keys, _ := msg["deleted"].([]any)
			for _, k := range keys {
				s, _ := k.(string)
				deleted = append(deleted, s)
			}
		}
		if want := []string{"g/a", "g/b"}; !slices.Equal(deleted, want) {
			t.Errorf("grpcurl DeleteKeys (dry run) reported deleted %q, want %q; it printed:\n%s", deleted, want, out)
		}
		last := msgs[len(msgs)-1]
		totals, _ := last["totals"].(map[string]any)
		if last["done"] != true || last["cursor"] != nil || totals["deleted"] != "2" {
			t.Errorf("last message = %v, want done, no cursor, totals.deleted \"2\"", last)
		}
		// A dry run deletes nothing.
		for key := range items {
			mustGet(testContext(t), t, kv, store, key)
		}
	})
}
