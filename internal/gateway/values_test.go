package gateway

import (
	"bytes"
	"context"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/valuepool"
)

// TestDecodeLentValue checks that a PutItemRequest decoded with its value
// in a lent buffer is exactly what proto.Unmarshal makes of the same
// bytes, errors included, and that the value is in a pooled buffer.
func TestDecodeLentValue(t *testing.T) {
	t.Parallel()
	gen := uint64(7)
	full, err := proto.Marshal(&kvv1.PutItemRequest{
		StoreId: "s", Key: "k", Value: bytes.Repeat([]byte("v"), 5000), Metadata: "m",
		Mode: kvv1.PutMode_PUT_MODE_APPEND, IfGenerationMatch: &gen, TimeToLive: durationpb.New(90e9),
	})
	if err != nil {
		t.Fatal(err)
	}
	valueField := func(v string) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), []byte(v))
	}
	cases := []struct {
		name      string
		data      []byte
		wantLent  bool
		wantError bool
	}{
		{name: "every field", data: full, wantLent: true},
		{name: "value twice, the last wins", data: append(append(valueField("first"), full...), valueField("the last value")...), wantLent: true},
		{name: "unknown field kept", data: append(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1), full...), wantLent: true},
		{name: "empty value", data: append(full, valueField("")...)},
		{name: "value with the wrong wire type, an unknown field", data: append(protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 1), full...), wantLent: true},
		{name: "truncated", data: full[:len(full)-3], wantError: true},
		{name: "key not UTF-8", data: append(protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "\xff"), full...), wantError: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, lease := valuepool.WithLease(context.Background())
			defer lease.Release()
			want := &kvv1.PutItemRequest{}
			wantErr := proto.Unmarshal(tc.data, want)
			got := &kvv1.PutItemRequest{}
			gotErr := decodeLentValue(ctx, tc.data, got, proto.Unmarshal)
			if (gotErr != nil) != tc.wantError || (wantErr != nil) != tc.wantError {
				t.Fatalf("errors: lent %v, proto.Unmarshal %v; want an error: %v", gotErr, wantErr, tc.wantError)
			}
			if tc.wantError {
				if gotErr.Error() != wantErr.Error() {
					t.Errorf("error %q, proto.Unmarshal's %q", gotErr, wantErr)
				}
				return
			}
			if !proto.Equal(got, want) {
				t.Errorf("decoded %v, proto.Unmarshal %v", got, want)
			}
			// A lent buffer has its size class's capacity, beyond the value.
			if lent := cap(got.GetValue()) != len(got.GetValue()); lent != tc.wantLent {
				t.Errorf("value of %d bytes with capacity %d: lent %v, want %v", len(got.GetValue()), cap(got.GetValue()), lent, tc.wantLent)
			}
		})
	}
}
