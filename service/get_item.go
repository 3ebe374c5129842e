package service

import (
	"context"
	"slices"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
)

// HeldGenerations are generations of an item that a GetItem caller
// already holds, beside its request's if_generation_not_match: the entity
// tags of an HTTP If-None-Match header, which the gateway reads (the
// service knows nothing of HTTP) and passes on with [WithHeldGenerations].
type HeldGenerations struct {
	// Any holds every generation: If-None-Match: *, which matches any
	// item that exists.
	Any bool
	// Generations are the generations held.
	Generations []uint64
}

// Matches reports whether gen is one of the held generations.
func (h HeldGenerations) Matches(gen uint64) bool {
	return h.Any || slices.Contains(h.Generations, gen)
}

func (h HeldGenerations) empty() bool { return !h.Any && len(h.Generations) == 0 }

type heldGenerationsKey struct{}

// WithHeldGenerations returns ctx carrying generations the caller holds of
// the item its GetItem reads. GetItem treats them as it treats
// if_generation_not_match: when the item's generation is one of them it
// checks with a HEAD, moves no value and answers not_modified.
func WithHeldGenerations(ctx context.Context, h HeldGenerations) context.Context {
	return context.WithValue(ctx, heldGenerationsKey{}, h)
}

// heldGenerations is what the caller holds: the request's
// if_generation_not_match and what the context carries.
func heldGenerations(ctx context.Context, ifNotMatch *uint64) HeldGenerations {
	h, _ := ctx.Value(heldGenerationsKey{}).(HeldGenerations)
	if ifNotMatch != nil {
		h.Generations = append(slices.Clip(h.Generations), *ifNotMatch)
	}
	return h
}

// GetItem reads one item: with a GET, or with a HEAD alone for
// ITEM_VIEW_METADATA. When the caller holds a generation
// (if_generation_not_match, or an If-None-Match the gateway passed on),
// a HEAD comes first, and an item still at a held generation is answered
// not_modified without its value; only an item that changed is read with
// a GET (for the full view). A HEAD's 404 is NOT_FOUND, as a GET's is.
func (s *Service) GetItem(ctx context.Context, req *kvv1.GetItemRequest) (*kvv1.GetItemResponse, error) {
	var v violations
	v.checkStoreID(req.GetStoreId())
	v.Check("key", upstream.CheckKey(req.GetKey()))
	v.checkEnum("view", req.GetView())
	if err := v.Err(); err != nil {
		return nil, err
	}
	store, key := req.GetStoreId(), req.GetKey()
	held := heldGenerations(ctx, req.IfGenerationNotMatch)
	metadataOnly := req.GetView() == kvv1.ItemView_ITEM_VIEW_METADATA
	if metadataOnly || !held.empty() {
		head, err := s.kv.HeadItem(ctx, store, key)
		if err != nil {
			return nil, s.words.fromUpstream(err, itemSubject)
		}
		notModified := held.Matches(head.Generation)
		if notModified || metadataOnly {
			return &kvv1.GetItemResponse{Item: itemProto(key, head, false), NotModified: notModified}, nil
		}
	}
	item, err := s.kv.GetItem(ctx, store, key)
	if err != nil {
		return nil, s.words.fromUpstream(err, itemSubject)
	}
	// The item may have been written back to a held generation between
	// the HEAD and the GET (or held is empty and this never matches): the
	// answer follows what was read last.
	if held.Matches(item.Generation) {
		return &kvv1.GetItemResponse{Item: itemProto(key, item, false), NotModified: true}, nil
	}
	return &kvv1.GetItemResponse{Item: itemProto(key, item, true)}, nil
}
