package service

import (
	"context"
	"slices"
	"testing"
)

func TestPrefixFilter(t *testing.T) {
	cases := []struct {
		prefix     string
		query      string
		keys       []string
		want       []string
		wantPassed bool
	}{
		// Fastly filters the whole prefix: the page is kept as it is.
		{"ab", "ab", []string{"ab", "ab1"}, []string{"ab", "ab1"}, false},
		{"", "", []string{"a", "b"}, []string{"a", "b"}, false},
		// Fastly filters only "a"; the rest is filtered here.
		{"a/b", "a", []string{"a", "a/a", "a/b", "a/b/1", "a/c", "a/d"}, []string{"a/b", "a/b/1"}, true},
		{"a/b", "a", []string{"a", "a/a"}, []string{}, false},
		{"a/b", "a", []string{"a/b", "a/b2"}, []string{"a/b", "a/b2"}, false},
		{"a:b", "a", []string{"a:c"}, []string{}, true},
		{"/x", "", []string{"/x", "/y"}, []string{"/x"}, true},
	}
	for _, c := range cases {
		f := newPrefixFilter(c.prefix)
		if f.query != c.query {
			t.Errorf("prefix %q: query %q; want %q", c.prefix, f.query, c.query)
		}
		got, passed := f.apply(slices.Clone(c.keys))
		if !slices.Equal(got, c.want) || passed != c.wantPassed {
			t.Errorf("prefix %q over %q = %q, passed %v; want %q, %v", c.prefix, c.keys, got, passed, c.want, c.wantPassed)
		}
	}
}

// newFakeLister lists keys through a fake upstream with pages of pageSize.
func newFakeLister(keys []string, prefix string, pageSize uint32) *lister {
	s := New(&fakeKV{keys: keys}, Config{})
	return s.newLister("store", prefix, pageSize, 0)
}

func TestListerAfterSkipsWithinPage(t *testing.T) {
	l := newFakeLister([]string{"a", "b", "c", "d", "e"}, "", 3)
	pg, err := l.fetch(context.Background(), position{after: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"c"}; !slices.Equal(pg.keys, want) {
		t.Errorf("keys %q; want %q", pg.keys, want)
	}
	if want := (position{upstream: "3"}); pg.next != want {
		t.Errorf("next %+v; want %+v", pg.next, want)
	}
}

// A cursor made with a larger page than the reader's can point past the
// whole page fetched: the skip goes on into the next page.
func TestListerCarriesAfter(t *testing.T) {
	l := newFakeLister([]string{"a", "b", "c", "d", "e"}, "", 2)
	ctx := context.Background()
	pg, err := l.fetch(ctx, position{after: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.keys) != 0 || pg.next != (position{upstream: "2", after: "c"}) {
		t.Fatalf("first page: keys %q, next %+v; want none, next {2 c}", pg.keys, pg.next)
	}
	pg, err = l.fetch(ctx, pg.next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pg.keys, []string{"d"}) || pg.next != (position{upstream: "4"}) {
		t.Errorf("second page: keys %q, next %+v; want [d], next {4}", pg.keys, pg.next)
	}
	pg, err = l.fetchNonEmpty(ctx, position{after: "c"})
	if err != nil || !slices.Equal(pg.keys, []string{"d"}) || pg.from != (position{upstream: "2", after: "c"}) {
		t.Errorf("fetchNonEmpty = keys %q from %+v, %v; want [d] from {2 c}", pg.keys, pg.from, err)
	}
}

func TestListerEnds(t *testing.T) {
	ctx := context.Background()
	// The last page has no upstream cursor.
	l := newFakeLister([]string{"a", "b"}, "", 2)
	pg, err := l.fetch(ctx, position{})
	if err != nil || !pg.next.end {
		t.Errorf("last page: next %+v, %v; want the end", pg.next, err)
	}
	// A locally filtered listing ends once the keys pass the prefix, even
	// with more pages upstream.
	f := &fakeKV{keys: []string{"a/a", "a/b", "a/c", "a/d", "a/e"}}
	l = New(f, Config{}).newLister("store", "a/b", 2, 0)
	var got []string
	for pos := (position{}); !pos.end; {
		pg, err := l.fetch(ctx, pos)
		if err != nil {
			t.Fatal(err)
		}
		got, pos = append(got, pg.keys...), pg.next
	}
	if !slices.Equal(got, []string{"a/b"}) || len(f.lists) != 2 {
		t.Errorf("listing a/b read %q in %d pages; want [a/b] in 2", got, len(f.lists))
	}
	if f.lists[0].Prefix != "a" {
		t.Errorf("Fastly was asked for prefix %q; want %q", f.lists[0].Prefix, "a")
	}
}
