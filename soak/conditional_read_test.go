package soak

import (
	"context"
	"strings"
	"sync"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

// The read phase of the unary callers: a quarter of their reads are plain
// GetItems (get), the rest read with ITEM_VIEW_METADATA (a HEAD upstream)
// or with if_generation_not_match set to a generation the caller last saw
// (a HEAD, then a GET only when the item changed). Under faults these are
// retried like any read, and none may report an item, a value or a
// not_modified that the key's possible states rule out.

// heldCopy is what a caller last read of an overwrite key: its generation
// and its value (a metadata read learns the value from the metadata,
// owMeta(value)).
type heldCopy struct {
	gen   uint64
	value string
}

// heldCopies maps each *owKey to its heldCopy. Every key belongs to one
// caller, so entries are never shared; the map is only shared by the
// callers' goroutines.
var heldCopies sync.Map

func (c *caller) read(ctx context.Context, k *owKey) {
	held, ok := heldCopies.Load(k)
	switch r := c.rng.IntN(4); {
	case r == 0:
		c.get(ctx, k)
		heldCopies.Delete(k) // get keeps no generation
	case r == 1 || !ok:
		c.readMeta(ctx, k)
	default:
		c.readIfChanged(ctx, k, held.(heldCopy))
	}
}

// readMeta reads k with ITEM_VIEW_METADATA.
func (c *caller) readMeta(ctx context.Context, k *owKey) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: storeID, Key: k.key, View: kvv1.ItemView_ITEM_VIEW_METADATA})
	r := c.outcome(ctx, "get meta", err, connect.CodeNotFound, connect.CodeResourceExhausted, connect.CodeUnavailable)
	switch {
	case r.kind == outOK:
		if resp.GetNotModified() || len(resp.GetItem().GetValue()) != 0 {
			c.p.add("metadata read moved a value", "GetItem(%s, metadata view) = %d value bytes, not_modified %t; want neither",
				k.key, len(resp.GetItem().GetValue()), resp.GetNotModified())
		}
		c.seen(k, "metadata view", resp.GetItem(), "")
	case r.code == connect.CodeNotFound:
		c.seenAbsent(k, "GetItem(metadata view)")
	}
}

// readIfChanged reads k with if_generation_not_match = held.gen, in either
// view.
func (c *caller) readIfChanged(ctx context.Context, k *owKey, held heldCopy) {
	view := kvv1.ItemView_ITEM_VIEW_FULL
	if c.rng.IntN(2) == 0 {
		view = kvv1.ItemView_ITEM_VIEW_METADATA
	}
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: storeID, Key: k.key, View: view, IfGenerationNotMatch: proto.Uint64(held.gen)})
	r := c.outcome(ctx, "get if changed", err, connect.CodeNotFound, connect.CodeResourceExhausted, connect.CodeUnavailable)
	switch {
	case r.kind != outOK && r.code == connect.CodeNotFound:
		c.seenAbsent(k, "GetItem(if_generation_not_match)")
	case r.kind != outOK:
	case resp.GetNotModified():
		c.stats.add("get if changed: not_modified", 1)
		item := resp.GetItem()
		if item.GetGeneration() != held.gen || len(item.GetValue()) != 0 {
			c.p.add("wrong not_modified", "GetItem(%s, if_generation_not_match %d) = not_modified with generation %d and %d value bytes",
				k.key, held.gen, item.GetGeneration(), len(item.GetValue()))
		}
		c.seen(k, "not_modified", item, held.value)
	default:
		item := resp.GetItem()
		if item.GetGeneration() == held.gen {
			c.p.add("missed not_modified", "GetItem(%s, if_generation_not_match %d) sent the item at that generation", k.key, held.gen)
		}
		value := ""
		if view == kvv1.ItemView_ITEM_VIEW_FULL {
			value = string(item.GetValue())
		}
		c.seen(k, "changed, "+view.String(), item, value)
	}
}

// seen checks an item read of k against the states k may be in, and
// narrows them to it. value is the item's value when the read returned it
// (or the caller held it); otherwise it is taken from the metadata.
func (c *caller) seen(k *owKey, how string, item *kvv1.Item, value string) {
	md := item.GetMetadata()
	if value == "" {
		v, ok := strings.CutPrefix(md, owMeta(""))
		if !ok {
			c.p.add("read wrong metadata", "GetItem(%s, %s): metadata %q is no value's", k.key, how, md)
			return
		}
		value = v
	}
	switch {
	case !k.states[value]:
		c.p.add("read wrong value", "GetItem(%s, %s) = %q; it must be %s", k.key, how, value, k.possible())
	case md != owMeta(value):
		c.p.add("read wrong metadata", "GetItem(%s, %s) = %q with metadata %q, want %q", k.key, how, value, md, owMeta(value))
	case item.Size == nil || item.GetSize() != uint64(len(value)):
		c.p.add("read wrong size", "GetItem(%s, %s) = %q with size %v; want %d", k.key, how, value, item.Size, len(value))
	}
	k.states = map[string]bool{value: true}
	heldCopies.Store(k, heldCopy{gen: item.GetGeneration(), value: value})
}

// seenAbsent checks a NOT_FOUND for k.
func (c *caller) seenAbsent(k *owKey, call string) {
	if !k.states[""] {
		c.p.add("lost write", "%s of %s = NOT_FOUND; it must be %s", call, k.key, k.possible())
	}
	k.states = map[string]bool{"": true}
	heldCopies.Delete(k)
}
