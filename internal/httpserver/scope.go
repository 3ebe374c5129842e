package httpserver

import (
	"context"
	"net/http"
)

// A request's scope: the values kvgate's HTTP middleware attach to one
// request. Each layer adding a value with context.WithValue and
// Request.WithContext would copy the whole request (several hundred
// bytes) once per layer and lengthen the chain every ctx.Value lookup
// walks; on the unary path those copies were the largest single source of
// allocated bytes. Instead Run's requests get one scope at the top, and
// [SetValue] attaches a value to it in place.

// scopeSlots is how many values a scope holds in place: the request id,
// the RPC outcome, the caller, the memory account and the charged body,
// with room to spare. Further values go into a slice.
const scopeSlots = 6

type scopeEntry struct{ key, val any }

// scopeCtx is a request's context with its scope's values.
type scopeCtx struct {
	context.Context
	guard *bodyGuard
	n     int
	slots [scopeSlots]scopeEntry
	more  []scopeEntry
}

func (c *scopeCtx) Value(key any) any {
	if key == (guardKey{}) {
		return c.guard
	}
	if key == (scopeKey{}) {
		return c
	}
	// Newest first, so that a key set again hides its earlier value, as
	// a nested context.WithValue does.
	for i := len(c.more) - 1; i >= 0; i-- {
		if c.more[i].key == key {
			return c.more[i].val
		}
	}
	for i := c.n - 1; i >= 0; i-- {
		if c.slots[i].key == key {
			return c.slots[i].val
		}
	}
	return c.Context.Value(key)
}

type scopeKey struct{}

// SetValue attaches val under key to r's context, as context.WithValue
// would, and returns the request to pass on. For a request Run serves,
// that is r itself: the value is attached in place to the request's scope
// and the request is not copied. Otherwise it is r with
// context.WithValue(r.Context(), key, val). Unlike context.WithValue's,
// the value is seen through every context of the request, those made
// before the call too, so call it before handing the request on and never
// concurrently with the request's handlers. A key set again hides its
// earlier value.
func SetValue(r *http.Request, key, val any) *http.Request {
	s, ok := r.Context().Value(scopeKey{}).(*scopeCtx)
	if !ok {
		return r.WithContext(context.WithValue(r.Context(), key, val))
	}
	if s.n < len(s.slots) {
		s.slots[s.n] = scopeEntry{key, val}
		s.n++
	} else {
		s.more = append(s.more, scopeEntry{key, val})
	}
	return r
}
