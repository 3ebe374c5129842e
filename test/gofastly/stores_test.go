package gofastly_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/fastly/go-fastly/v16/fastly"
)

// storeIDPattern is the shape of the ids Fastly gives KV stores.
var storeIDPattern = regexp.MustCompile(`^[a-z0-9]{22}$`)

func TestCreateKVStore(t *testing.T) {
	t.Parallel()
	c, clk := newClient(t)
	ctx := context.Background()
	if _, err := c.CreateKVStore(ctx, &fastly.CreateKVStoreInput{Name: "taken"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, storeName, location string
		status                    int
	}{
		{name: "no location", storeName: "plain"},
		{name: "US", storeName: "in-us", location: "US"},
		{name: "EU", storeName: "in-eu", location: "EU"},
		{name: "ASIA", storeName: "in-asia", location: "ASIA"},
		{name: "AUS", storeName: "in-aus", location: "AUS"},
		{name: "unknown location", storeName: "nowhere", location: "MARS", status: http.StatusBadRequest},
		{name: "name taken", storeName: "taken", status: http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := c.CreateKVStore(ctx, &fastly.CreateKVStoreInput{Name: tc.storeName, Location: tc.location})
			wantStatus(t, err, tc.status)
			if tc.status != 0 {
				return
			}
			if !storeIDPattern.MatchString(got.StoreID) {
				t.Errorf("StoreID = %q, want 22 lowercase letters and digits", got.StoreID)
			}
			if got.Name != tc.storeName {
				t.Errorf("Name = %q, want %q", got.Name, tc.storeName)
			}
			if got.CreatedAt == nil || !got.CreatedAt.Equal(clk.Now()) {
				t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, clk.Now())
			}
			if got.UpdatedAt == nil || !got.UpdatedAt.Equal(*got.CreatedAt) {
				t.Errorf("UpdatedAt = %v, want CreatedAt %v", got.UpdatedAt, got.CreatedAt)
			}
			desc, err := c.GetKVStore(ctx, &fastly.GetKVStoreInput{StoreID: got.StoreID})
			if err != nil {
				t.Fatal(err)
			}
			if desc.StoreID != got.StoreID || desc.Name != got.Name {
				t.Errorf("GetKVStore = %+v, want %+v", desc, got)
			}
		})
	}
}

func TestCreateKVStoreWithoutName(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	// go-fastly refuses it before sending anything.
	_, err := c.CreateKVStore(context.Background(), &fastly.CreateKVStoreInput{})
	if err != fastly.ErrMissingName {
		t.Fatalf("error = %v, want %v", err, fastly.ErrMissingName)
	}
}

func TestGetKVStoreUnknown(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	_, err := c.GetKVStore(context.Background(), &fastly.GetKVStoreInput{StoreID: "nosuchstore0000000000a"})
	wantStatus(t, err, http.StatusNotFound)
}

// createStores creates n stores named store-0 .. store-n-1 and returns
// their ids in the order the listing gives them.
func createStores(t *testing.T, c *fastly.Client, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		s, err := c.CreateKVStore(context.Background(), &fastly.CreateKVStoreInput{Name: "store-" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = s.StoreID
	}
	slices.Sort(ids)
	return ids
}

func TestListKVStoresPages(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := context.Background()
	ids := createStores(t, c, 7)

	var got []string
	var sizes []int
	in := &fastly.ListKVStoresInput{Limit: 3}
	for {
		page, err := c.ListKVStores(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if page.Meta["limit"] != "3" || page.Meta["total"] != "7" {
			t.Errorf("Meta = %v, want limit 3 and total 7", page.Meta)
		}
		sizes = append(sizes, len(page.Data))
		for _, s := range page.Data {
			got = append(got, s.StoreID)
		}
		if page.Meta["next_cursor"] == "" {
			break
		}
		in.Cursor = page.Meta["next_cursor"]
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Errorf("page sizes = %v, want [3 3 1]", sizes)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("listed %v, want %v", got, ids)
	}

	all, err := c.ListKVStores(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Data) != 7 || all.Meta["next_cursor"] != "" {
		t.Errorf("unpaged listing: %d stores, meta %v; want 7 and no cursor", len(all.Data), all.Meta)
	}
}

func TestListKVStoresPaginator(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ids := createStores(t, c, 5)
	p := c.NewListKVStoresPaginator(context.Background(), &fastly.ListKVStoresInput{Limit: 2})
	var got []string
	pages := 0
	for p.Next() {
		pages++
		for _, s := range p.Stores() {
			got = append(got, s.StoreID)
		}
	}
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if pages != 3 || !slices.Equal(got, ids) {
		t.Errorf("%d pages listing %v, want 3 listing %v", pages, got, ids)
	}
}

func TestListKVStoresByName(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := context.Background()
	createStores(t, c, 4)
	want, err := c.CreateKVStore(ctx, &fastly.CreateKVStoreInput{Name: "wanted"})
	if err != nil {
		t.Fatal(err)
	}
	// go-fastly v16 sends name only along with limit or cursor, so every
	// case sets a limit.
	for _, tc := range []struct {
		name, storeName string
		want            []string
	}{
		{name: "existing", storeName: "wanted", want: []string{want.StoreID}},
		{name: "absent", storeName: "missing", want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			page, err := c.ListKVStores(ctx, &fastly.ListKVStoresInput{Name: tc.storeName, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range page.Data {
				got = append(got, s.StoreID)
				if s.Name != tc.storeName {
					t.Errorf("store %s named %q, want %q", s.StoreID, s.Name, tc.storeName)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("listed %v, want %v", got, tc.want)
			}
			if total := page.Meta["total"]; total != strconv.Itoa(len(tc.want)) {
				t.Errorf("Meta total = %q, want %d", total, len(tc.want))
			}
		})
	}
}

func TestDeleteKVStore(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := context.Background()
	newStore := func(t *testing.T, items int) string {
		t.Helper()
		s, err := c.CreateKVStore(ctx, &fastly.CreateKVStoreInput{Name: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		for i := range items {
			err := c.InsertKVStoreKey(ctx, &fastly.InsertKVStoreKeyInput{StoreID: s.StoreID, Key: fmt.Sprint("k", i), Value: "v"})
			if err != nil {
				t.Fatal(err)
			}
		}
		return s.StoreID
	}
	for _, tc := range []struct {
		name   string
		items  int
		id     string // set for a store that was never created
		status int
	}{
		{name: "empty"},
		{name: "holding items", items: 2, status: http.StatusConflict},
		{name: "unknown", id: "nosuchstore0000000000a", status: http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := tc.id
			if id == "" {
				id = newStore(t, tc.items)
			}
			err := c.DeleteKVStore(ctx, &fastly.DeleteKVStoreInput{StoreID: id})
			wantStatus(t, err, tc.status)
			_, getErr := c.GetKVStore(ctx, &fastly.GetKVStoreInput{StoreID: id})
			switch {
			case tc.status == 0 || tc.status == http.StatusNotFound:
				wantStatus(t, getErr, http.StatusNotFound)
			default:
				// A refused delete leaves the store and its items.
				wantStatus(t, getErr, 0)
				keys, err := c.ListKVStoreKeys(ctx, &fastly.ListKVStoreKeysInput{StoreID: id})
				if err != nil {
					t.Fatal(err)
				}
				if len(keys.Data) != tc.items {
					t.Errorf("%d keys left, want %d", len(keys.Data), tc.items)
				}
			}
		})
	}
}

func TestDeleteKVStoreOnceEmptied(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := context.Background()
	s, err := c.CreateKVStore(ctx, &fastly.CreateKVStoreInput{Name: "emptied"})
	if err != nil {
		t.Fatal(err)
	}
	item := &fastly.InsertKVStoreKeyInput{StoreID: s.StoreID, Key: "k", Value: "v"}
	if err := c.InsertKVStoreKey(ctx, item); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, c.DeleteKVStore(ctx, &fastly.DeleteKVStoreInput{StoreID: s.StoreID}), http.StatusConflict)
	if err := c.DeleteKVStoreKey(ctx, &fastly.DeleteKVStoreKeyInput{StoreID: s.StoreID, Key: "k"}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, c.DeleteKVStore(ctx, &fastly.DeleteKVStoreInput{StoreID: s.StoreID}), 0)
}
