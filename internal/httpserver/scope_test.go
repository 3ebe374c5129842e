package httpserver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

type testKey int

// TestSetValue checks that values set in a request's scope are seen
// through its context and contexts derived from it, that a key set again
// hides its earlier value, that more values than the scope's slots fit,
// and that outside a scope SetValue is context.WithValue.
func TestSetValue(t *testing.T) {
	t.Parallel()
	parent := context.WithValue(context.Background(), testKey(-1), "from the parent")
	scoped := context.Context(&scopeCtx{Context: parent, guard: &bodyGuard{}})
	req := httptest.NewRequestWithContext(scoped, http.MethodGet, "/", nil)
	const n = scopeSlots + 3
	for i := range n {
		if got := SetValue(req, testKey(i), fmt.Sprint("value ", i)); got != req {
			t.Fatalf("SetValue in a scope returned a new request")
		}
	}
	SetValue(req, testKey(1), "value 1 again")
	derived, cancel := context.WithCancel(scoped)
	defer cancel()
	for _, ctx := range []context.Context{scoped, derived} {
		for i := range n {
			want := fmt.Sprint("value ", i)
			if i == 1 {
				want = "value 1 again"
			}
			if got := ctx.Value(testKey(i)); got != want {
				t.Errorf("Value(%d) = %v, want %q", i, got, want)
			}
		}
		if got := ctx.Value(testKey(-1)); got != "from the parent" {
			t.Errorf("the parent's value = %v", got)
		}
		if got := ctx.Value(testKey(99)); got != nil {
			t.Errorf("an unset key = %v, want nil", got)
		}
		if _, ok := ctx.Value(guardKey{}).(*bodyGuard); !ok {
			t.Errorf("the scope's body guard is not found")
		}
	}

	plain := httptest.NewRequest(http.MethodGet, "/", nil)
	got := SetValue(plain, testKey(1), "x")
	if got == plain || got.Context().Value(testKey(1)) != "x" {
		t.Fatalf("outside a scope SetValue must return a new request carrying the value")
	}
}
