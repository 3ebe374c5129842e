package service

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

// headingKV is the fake upstream with items behind its keys: each HEAD is
// counted and answers.
type headingKV struct {
	*fakeKV
	heads atomic.Int64
}

func (h *headingKV) HeadItem(context.Context, string, string) (*upstream.Item, error) {
	h.heads.Add(1)
	return &upstream.Item{Generation: 1, Size: 1}, nil
}

// settled polls count until it has not changed for a while and returns
// its value.
func settled(t *testing.T, count func() int64) int64 {
	t.Helper()
	last, same := count(), 0
	for range 500 {
		time.Sleep(10 * time.Millisecond)
		if n := count(); n != last {
			last, same = n, 0
		} else if same++; same == 20 {
			return last
		}
	}
	t.Fatalf("count still changing (now %d)", last)
	return 0
}

// TestStreamKeysMetadataHoldsTwoPages stops taking messages from the
// include_metadata pipeline after the first, as a sender blocked by a slow
// client does: the items of one more page are read and no more, and the
// lister has fetched one page beyond that.
func TestStreamKeysMetadataHoldsTwoPages(t *testing.T) {
	t.Parallel()
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%04d", i)
	}
	kv := &headingKV{fakeKV: &fakeKV{keys: keys}}
	s := New(kv, Config{ListMetadataConcurrency: 4})
	l := s.newLister("store", "", 10, 0)
	ctx, cancel := context.WithCancel(t.Context())
	pages := make(chan keyPage)
	out := make(chan itemPage)
	go func() { _ = l.produce(ctx, position{}, pages) }()
	go func() { _ = s.describePages(ctx, "store", 0, pages, out) }()
	defer func() {
		cancel()
		for range out {
		}
		for range pages {
		}
	}()

	first := <-out // the page being sent
	if len(first.items) != 10 || first.items[0].GetKey() != "k0000" {
		t.Fatalf("first page: %d items, the first %v", len(first.items), first.items[0])
	}
	if n := settled(t, kv.heads.Load); n != 20 {
		t.Errorf("%d HEADs while the first page is being sent; want 20 (that page and the next)", n)
	}
	kv.mu.Lock()
	lists := len(kv.lists)
	kv.mu.Unlock()
	if lists != 3 {
		t.Errorf("%d pages listed while the first is being sent; want 3 (one waiting for its HEADs)", lists)
	}
}
