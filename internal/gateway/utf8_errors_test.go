package gateway

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

const notUTF8 = "a\xffb"

// Binary fields, encoded by hand since generated code refuses to encode
// strings that are not UTF-8.

func bytesField(num protowire.Number, v string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// batchItem is a BatchItem with key and metadata; putItems a PutItemsRequest
// holding items.
func batchItem(key, metadata string) []byte {
	return cat(bytesField(1, key), bytesField(3, metadata))
}

func putItems(items ...[]byte) []byte {
	b := bytesField(1, "store")
	for _, it := range items {
		b = append(b, bytesField(2, string(it))...)
	}
	return b
}

var (
	putItemsDesc = (&kvv1.PutItemsRequest{}).ProtoReflect().Descriptor()
	listKeysDesc = (&kvv1.ListKeysResponse{}).ProtoReflect().Descriptor()
)

func TestInvalidUTF8Field(t *testing.T) {
	t.Parallel()
	ttl := bytesField(4, string(varintField(1, 60))) // a Duration of 60s
	for _, tc := range []struct {
		name string
		md   protoreflect.MessageDescriptor
		data []byte
		want string
	}{
		{"empty", putItemsDesc, nil, ""},
		{"valid", putItemsDesc, putItems(batchItem("k", "m")), ""},
		{"top-level string", putItemsDesc, bytesField(1, notUTF8), "store_id"},
		{"second item's key", putItemsDesc, putItems(batchItem("k", "m"), batchItem(notUTF8, "m")), "items[1].key"},
		{"first item's metadata", putItemsDesc, putItems(batchItem("k", notUTF8)), "items[0].metadata"},
		{"first of two", putItemsDesc, putItems(batchItem("k", notUTF8), batchItem(notUTF8, "m")), "items[0].metadata"},
		{"after other fields", putItemsDesc, putItems(cat(ttl, varintField(5, 1), bytesField(2, "\xff"), batchItem(notUTF8, ""))), "items[0].key"},
		{"bytes field", putItemsDesc, putItems(cat(bytesField(1, "k"), bytesField(2, notUTF8))), ""},
		{"unknown field", putItemsDesc, cat(bytesField(99, notUTF8), bytesField(1, "s")), ""},
		{"unknown field, then a bad one", putItemsDesc, cat(bytesField(99, notUTF8), varintField(98, 7), bytesField(1, notUTF8)), "store_id"},
		{"repeated string", listKeysDesc, cat(bytesField(1, "a"), bytesField(2, "c"), bytesField(1, notUTF8)), "keys[1]"},
		{"truncated length", putItemsDesc, []byte{0x0a, 0x05, 'a'}, ""},
		{"truncated tag", putItemsDesc, []byte{0x80}, ""},
		{"truncated before the bad string", putItemsDesc, cat(bytesField(1, "s"), []byte{0x12, 0x7f}, bytesField(1, notUTF8)), ""},
		{"bad string before the truncation", putItemsDesc, cat(bytesField(1, notUTF8), []byte{0x12, 0x7f}), "store_id"},
	} {
		if got := invalidUTF8Field(tc.data, tc.md, ""); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestInvalidUTF8JSONField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		md   protoreflect.MessageDescriptor
		data string
		want string
	}{
		{"valid", putItemsDesc, `{"storeId":"s","items":[{"key":"k"}]}`, ""},
		{"json name", putItemsDesc, `{"storeId":"` + notUTF8 + `"}`, "store_id"},
		{"proto name", putItemsDesc, `{"store_id":"` + notUTF8 + `"}`, "store_id"},
		{"nested", putItemsDesc, `{"storeId":"s","items":[{"key":"k","value":"AA=="},{"metadata":"x","key":"` + notUTF8 + `"}]}`, "items[1].key"},
		{"after other values", putItemsDesc, `{"items":[{"key":"k","timeToLive":"1s","backgroundFetch":true,"ifGenerationMatch":"3"}],"storeId":"` + notUTF8 + `"}`, "store_id"},
		{"whitespace", putItemsDesc, " {\n \"items\" : [ { \"key\" : \"" + notUTF8 + "\" } ] } ", "items[0].key"},
		{"bytes field", putItemsDesc, `{"items":[{"value":"` + notUTF8 + `"}]}`, "items[0].value"},
		{"duration field", putItemsDesc, `{"items":[{"time_to_live":"` + notUTF8 + `"}]}`, "items[0].time_to_live"},
		{"repeated string", listKeysDesc, `{"keys":["a","` + notUTF8 + `"]}`, "keys[1]"},
		{"escapes are not raw bytes", putItemsDesc, `{"storeId":"\u00ff\ud800"}`, ""},
		{"unknown field", putItemsDesc, `{"other":"` + notUTF8 + `","storeId":"s"}`, ""},
		{"bad key", putItemsDesc, `{"store` + notUTF8 + `":"s"}`, ""},
		{"null and wrong shapes", putItemsDesc, `{"items":null,"storeId":1}`, ""},
		{"items not a list", putItemsDesc, `{"items":{"key":"` + notUTF8 + `"}}`, ""},
		{"item not an object", putItemsDesc, `{"items":[1,"k",null]}`, ""},
		{"not an object", putItemsDesc, `["` + notUTF8 + `"]`, ""},
		{"truncated", putItemsDesc, `{"storeId":`, ""},
		{"truncated after the bad string", putItemsDesc, `{"storeId":"` + notUTF8 + `",`, ""},
		{"empty", putItemsDesc, ``, ""},
	} {
		if got := invalidUTF8JSONField([]byte(tc.data), tc.md, ""); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
