package service

import (
	"context"
	"slices"
	"strings"

	"github.com/kvgate/kvgate/upstream"
)

// lister walks one listing of a store: the upstream pages of a prefix,
// filtered to the whole prefix when Fastly can only filter part of it.
type lister struct {
	kv          Upstream
	store       string
	filter      prefixFilter
	pageSize    int
	consistency upstream.Consistency
}

// keyPage is one upstream page's worth of matching keys.
type keyPage struct {
	keys []string
	// from is where the page was fetched from; next is right after it.
	from, next position
}

// fetch fetches the upstream page at pos and returns its keys that match
// the prefix and come after pos.after.
func (l *lister) fetch(ctx context.Context, pos position) (keyPage, error) {
	page, err := l.kv.ListKeys(ctx, l.store, upstream.ListOptions{
		Prefix:      l.filter.query,
		Cursor:      pos.upstream,
		Limit:       l.pageSize,
		Consistency: l.consistency,
	})
	if err != nil {
		return keyPage{}, err
	}
	keys := page.Keys
	carry := "" // an after that still applies to the next page
	if pos.after != "" {
		// Pages are byte-ordered: skip what the previous reader delivered.
		// A page read with a smaller page size than the one the cursor came
		// from can lie wholly before pos.after; the skip then goes on into
		// the next page.
		i, found := slices.BinarySearch(keys, pos.after)
		if found {
			i++
		}
		if i == len(keys) {
			carry = pos.after
		}
		keys = keys[i:]
	}
	keys, passed := l.filter.apply(keys)
	next := position{upstream: page.NextCursor, after: carry}
	if passed || page.NextCursor == "" {
		next = position{end: true}
	}
	return keyPage{keys: keys, from: pos, next: next}, nil
}

// fetchNonEmpty fetches pages from pos until one holds a matching key or
// the listing ends.
func (l *lister) fetchNonEmpty(ctx context.Context, pos position) (keyPage, error) {
	for {
		pg, err := l.fetch(ctx, pos)
		if err != nil || len(pg.keys) > 0 || pg.next.end {
			return pg, err
		}
		pos = pg.next
	}
}

// produce sends the listing's non-empty pages from pos on pages, fetching
// each while the previous one is being consumed: the channel is unbuffered,
// so the producer holds at most one page ahead. It stops when the listing
// ends, ctx ends or a fetch fails, and closes pages.
//
// When the end turns up only after a page was sent (Fastly can hand out a
// cursor for a last page that happens to be full), a final page with no
// keys is sent, so the stream's last cursor is always the empty one.
func (l *lister) produce(ctx context.Context, pos position, pages chan<- keyPage) error {
	defer close(pages)
	sent := false
	for {
		pg, err := l.fetchNonEmpty(ctx, pos)
		if err != nil {
			return err
		}
		if len(pg.keys) > 0 || (pg.next.end && sent) {
			select {
			case pages <- pg:
				sent = true
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if pg.next.end {
			return nil
		}
		pos = pg.next
	}
}

// prefixFilter matches keys against a prefix that Fastly can only partly
// filter.
type prefixFilter struct {
	prefix string
	// query is the part of prefix sent to Fastly.
	query string
	// local is set when Fastly's answer still needs filtering.
	local bool
}

func newPrefixFilter(prefix string) prefixFilter {
	query, rest := upstream.SplitPrefix(prefix)
	return prefixFilter{prefix: prefix, query: query, local: rest != ""}
}

// apply keeps the keys of a byte-ordered page that start with the prefix,
// and reports whether the page went past every key that could.
func (f prefixFilter) apply(keys []string) (matched []string, passed bool) {
	if !f.local {
		return keys, false
	}
	matched = keys[:0:0]
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, f.prefix):
			matched = append(matched, k)
		case k > f.prefix:
			return matched, true
		}
	}
	return matched, false
}
