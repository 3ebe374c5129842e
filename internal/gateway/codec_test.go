package gateway

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

func TestInvalidUTF8Field(t *testing.T) {
	t.Parallel()
	bad := "a\xffb"
	item := func(key, metadata string) []byte {
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		b = protowire.AppendString(b, key)
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		return protowire.AppendString(b, metadata)
	}
	putItems := func(items ...[]byte) []byte {
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		b = protowire.AppendString(b, "store")
		for _, it := range items {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, it)
		}
		return b
	}
	binary := []struct {
		name string
		data []byte
		want string
	}{
		{"valid", putItems(item("k", "m")), ""},
		{"top-level string", append(protowire.AppendTag(nil, 1, protowire.BytesType), protowire.AppendString(nil, bad)...), "store_id"},
		{"second item's key", putItems(item("k", "m"), item(bad, "m")), "items[1].key"},
		{"first item's metadata", putItems(item("k", bad)), "items[0].metadata"},
		{"truncated", []byte{0x0a, 0x05, 'a'}, ""},
	}
	md := (&kvv1.PutItemsRequest{}).ProtoReflect().Descriptor()
	for _, tc := range binary {
		if got := invalidUTF8Field(tc.data, md, ""); got != tc.want {
			t.Errorf("binary %s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	json := []struct {
		name string
		data string
		want string
	}{
		{"valid", `{"storeId":"s","items":[{"key":"k"}]}`, ""},
		{"json name", `{"storeId":"` + bad + `"}`, "store_id"},
		{"proto name", `{"store_id":"` + bad + `"}`, "store_id"},
		{"nested", `{"storeId":"s","items":[{"key":"k","value":"AA=="},{"metadata":"x","key":"` + bad + `"}]}`, "items[1].key"},
		{"after other values", `{"items":[{"key":"k","timeToLive":"1s","backgroundFetch":true}],"storeId":"` + bad + `"}`, "store_id"},
		{"not JSON", `{"storeId":`, ""},
	}
	for _, tc := range json {
		if got := invalidUTF8JSONField([]byte(tc.data), md); got != tc.want {
			t.Errorf("json %s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
