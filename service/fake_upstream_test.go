package service

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

// fakeOp is one write the fake upstream saw start.
type fakeOp struct {
	single bool
	keys   []string
}

// fakeKV is an in-memory upstream that records how writes overlap: which
// ops ran, in what order, how many at once, and whether two ever shared a
// key. Keys (sorted) are what ListKeys pages through; its cursor is the
// index of the page's first key.
type fakeKV struct {
	keys []string
	// hold, when set, makes every write wait until it is closed.
	hold chan struct{}
	// pause is how long each write takes.
	pause time.Duration
	// putErr, when set, answers every single PUT.
	putErr error

	mu        sync.Mutex
	lists     []upstream.ListOptions
	ops       []fakeOp
	values    map[string]string
	busy      map[string]bool
	active    int
	maxActive int
	clashes   []string // keys two ops held at once
}

func (f *fakeKV) GetItem(context.Context, string, string) (*upstream.Item, error) {
	return nil, &upstream.StatusError{Op: upstream.OpGet, Status: 404}
}

func (f *fakeKV) HeadItem(context.Context, string, string) (*upstream.Item, error) {
	return nil, &upstream.StatusError{Op: upstream.OpHead, Status: 404}
}

func (f *fakeKV) DeleteItem(context.Context, string, string, upstream.DeleteOptions) error {
	return nil
}

func (f *fakeKV) ListKeys(_ context.Context, _ string, opts upstream.ListOptions) (*upstream.KeyPage, error) {
	f.mu.Lock()
	f.lists = append(f.lists, opts)
	f.mu.Unlock()
	start := 0
	if opts.Cursor != "" {
		start, _ = strconv.Atoi(opts.Cursor)
	}
	var matching []string
	for _, k := range f.keys {
		if len(k) >= len(opts.Prefix) && k[:len(opts.Prefix)] == opts.Prefix {
			matching = append(matching, k)
		}
	}
	end := min(start+opts.Limit, len(matching))
	page := &upstream.KeyPage{Keys: slices.Clone(matching[start:end])}
	if end < len(matching) {
		page.NextCursor = strconv.Itoa(end)
	}
	return page, nil
}

func (f *fakeKV) PutItem(_ context.Context, _ string, key string, value []byte, _ upstream.PutOptions) error {
	f.write(fakeOp{single: true, keys: []string{key}}, map[string]string{key: string(value)})
	return f.putErr
}

func (f *fakeKV) PutBatch(_ context.Context, _ string, body []byte) (*upstream.BatchResult, error) {
	op := fakeOp{}
	values := make(map[string]string)
	for line := range bytes.Lines(body) {
		var l struct {
			Key   string `json:"key"`
			Value []byte `json:"value"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, &upstream.ResponseError{Op: upstream.OpBatch, Reason: err.Error()}
		}
		op.keys = append(op.keys, l.Key)
		values[l.Key] = string(l.Value)
	}
	f.write(op, values)
	return &upstream.BatchResult{}, nil
}

// write runs one op: it marks the op's keys busy, waits, stores the values
// and frees the keys.
func (f *fakeKV) write(op fakeOp, values map[string]string) {
	f.mu.Lock()
	if f.busy == nil {
		f.busy, f.values = make(map[string]bool), make(map[string]string)
	}
	f.ops = append(f.ops, op)
	for _, k := range op.keys {
		if f.busy[k] {
			f.clashes = append(f.clashes, k)
		}
		f.busy[k] = true
	}
	f.active++
	f.maxActive = max(f.maxActive, f.active)
	f.mu.Unlock()

	if f.hold != nil {
		<-f.hold
	}
	time.Sleep(f.pause)

	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range values {
		f.values[k] = v
	}
	for _, k := range op.keys {
		delete(f.busy, k)
	}
	f.active--
}

// running is how many writes are in progress.
func (f *fakeKV) running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active
}
