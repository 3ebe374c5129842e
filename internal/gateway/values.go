package gateway

import (
	"context"

	"connectrpc.com/connect/v2"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/valuepool"
)

// lendValueBuffers gives the RPCs that answer with values a lease of
// value buffers (see package valuepool), returned once the handler has
// sent its answer: connect-go has copied each value into the encoded
// message by then. Other RPCs pass untouched.
func lendValueBuffers(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		if spec.Procedure != kvv1connect.KVStoreServiceGetItemProcedure {
			return next(ctx, spec, stream)
		}
		ctx, lease := valuepool.WithLease(ctx)
		defer lease.Release()
		return next(ctx, spec, stream)
	}
}
