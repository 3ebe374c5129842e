package gateway

import (
	"context"
	"net/http"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/internal/valuepool"
)

// lendValueBuffers gives the unary RPCs that carry one value a lease of
// value buffers (see package valuepool), returned once the answer has
// been written. GetItem reads its value into one; PutItem's value is
// decoded into one (see decodeLentValue), and the upstream client has
// let go of it once the write has returned. The lease is attached to the
// request, not to the RPC's context, so that connect-go's decoding of the
// request sees it too. Other requests pass untouched.
func lendValueBuffers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case kvv1connect.KVStoreServiceGetItemProcedure, kvv1connect.KVStoreServicePutItemProcedure:
		default:
			next.ServeHTTP(w, r)
			return
		}
		lease := valuepool.NewLease()
		defer lease.Release()
		next.ServeHTTP(w, httpserver.SetValue(r, valuepool.LeaseKey(), lease))
	})
}

// lentValueField is the number of PutItemRequest's value field, the one
// decodeLentValue decodes into a lent buffer.
var lentValueField = (&kvv1.PutItemRequest{}).ProtoReflect().Descriptor().Fields().ByName("value").Number()

// decodeLentValue decodes data into m as unmarshal does, except that a
// PutItemRequest's value is copied into a buffer lent by the RPC's value
// lease (see lendValueBuffers) instead of a fresh allocation: a value of
// up to Fastly's 100 MiB per call is most of what a PutItem allocates,
// and so most of the garbage collections it causes.
//
// The rest of the message, every occurrence of the value taken out, is
// decoded by unmarshal itself, so every other field, the errors and the
// unknown fields are exactly unmarshal's; the value is its last
// occurrence, as protobuf decodes a repeated singular field. Data that is
// not well-formed wire format is left to unmarshal whole, to refuse.
func decodeLentValue(ctx context.Context, data []byte, m proto.Message, unmarshal func([]byte, proto.Message) error) error {
	req, ok := m.(*kvv1.PutItemRequest)
	if !ok || !valuepool.Leased(ctx) {
		return unmarshal(data, m)
	}
	var value []byte
	rest := make([]byte, 0, min(len(data), 4<<10))
	for b := data; len(b) > 0; {
		n, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 {
			return unmarshal(data, m)
		}
		fieldLen := protowire.ConsumeFieldValue(n, typ, b[tagLen:])
		if fieldLen < 0 {
			return unmarshal(data, m)
		}
		if n == lentValueField && typ == protowire.BytesType {
			value, _ = protowire.ConsumeBytes(b[tagLen:])
		} else {
			rest = append(rest, b[:tagLen+fieldLen]...)
		}
		b = b[tagLen+fieldLen:]
	}
	if err := unmarshal(rest, m); err != nil {
		return err
	}
	if len(value) > 0 {
		lent := valuepool.Buffer(ctx, len(value))
		copy(lent, value)
		req.Value = lent
	}
	return nil
}
