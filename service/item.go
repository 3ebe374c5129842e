package service

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
)

// itemProto is the Item callers see for an upstream item under key. With
// withValue the value is handed over, not copied. size is the upstream's
// Size (len(value) after a GET, Stored-Content-Length after a HEAD), left
// unset when the upstream did not say (-1).
func itemProto(key string, it *upstream.Item, withValue bool) *kvv1.Item {
	out := &kvv1.Item{
		Key:        key,
		Metadata:   it.Metadata,
		Generation: it.Generation,
	}
	if withValue {
		out.Value = it.Value
	}
	if it.Size >= 0 {
		size := uint64(it.Size)
		out.Size = &size
	}
	if !it.LastModified.IsZero() {
		out.LastModified = timestamppb.New(it.LastModified)
	}
	return out
}
