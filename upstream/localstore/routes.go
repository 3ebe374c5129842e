package localstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// RequestKind is the endpoint a request was routed to, for Store.Count.
type RequestKind int

// The kinds of request. RequestOther is every request that reached no
// endpoint: an unknown path or method (404, 405), or a path the router
// would clean or redirect, such as one with a "." or ".." segment (400).
// RequestStore is every store-level call: create, list, describe, rename
// and delete a store.
const (
	RequestOther RequestKind = iota
	RequestList
	RequestGet
	RequestHead
	RequestPut
	RequestDelete
	RequestBatch
	RequestStore
	numRequestKinds
)

var requestKindNames = [numRequestKinds]string{"other", "list", "get", "head", "put", "delete", "batch", "store"}

func (k RequestKind) String() string {
	if k < 0 || k >= numRequestKinds {
		return "RequestKind(" + strconv.Itoa(int(k)) + ")"
	}
	return requestKindNames[k]
}

// Count is the number of requests of kind the store has received, counted
// as they arrive (before any injected latency), whatever their outcome.
func (s *Store) Count(kind RequestKind) int64 {
	if kind < 0 || kind >= numRequestKinds {
		return 0
	}
	return s.counts[kind].Load()
}

// route is a registered endpoint. The mux hands it back from
// ServeMux.Handler, which tells a routed request from a 404, a 405 or a
// redirect.
type route struct {
	kind RequestKind
	h    http.HandlerFunc
}

func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.h(w, r) }

// Handler serves the KV Store store, item, listing and batch endpoints.
// Every error, an unknown path or method included, answers in Fastly's
// JSON error shape.
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range []struct {
		pattern string
		route
	}{
		{"GET /resources/stores/kv/{store}/keys", route{RequestList, s.handleList}},
		{"GET /resources/stores/kv/{store}/keys/{key...}", route{RequestGet, s.handleGet}},
		{"HEAD /resources/stores/kv/{store}/keys/{key...}", route{RequestHead, s.handleGet}},
		{"PUT /resources/stores/kv/{store}/keys/{key...}", route{RequestPut, s.handlePut}},
		{"DELETE /resources/stores/kv/{store}/keys/{key...}", route{RequestDelete, s.handleDelete}},
		{"PUT /resources/stores/kv/{store}/batch", route{RequestBatch, s.handleBatch}},
		{"POST /resources/stores/kv", route{RequestStore, s.handleCreateStore}},
		{"GET /resources/stores/kv", route{RequestStore, s.handleListStores}},
		{"GET /resources/stores/kv/{store}", route{RequestStore, s.handleGetStore}},
		{"PUT /resources/stores/kv/{store}", route{RequestStore, s.handleRenameStore}},
		{"DELETE /resources/stores/kv/{store}", route{RequestStore, s.handleDeleteStore}},
	} {
		mux.Handle(r.pattern, &r.route)
	}
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Fastly's API answers every item call uncached.
		w.Header().Set("Cache-Control", "no-store")
		// ServeMux would redirect a "." or ".." segment to a cleaned path
		// (and so "GET keys/.." to the listing); these are invalid keys.
		if hasDotSegment(r.URL.EscapedPath()) {
			badRequest(w, `invalid key: key must not be "." or ".." or contain such a segment`)
			return
		}
		if h, _ := mux.Handler(r); !isRoute(h) {
			// The mux answers an unknown path or method with Go's plain
			// text; Fastly clients expect its JSON error shape.
			w = &jsonRouteErrors{ResponseWriter: w, r: r}
		}
		mux.ServeHTTP(w, r)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := kindOf(mux, r)
		s.requests.Add(1)
		s.counts[kind].Add(1)
		if s.onRequest != nil {
			s.onRequest(r)
		}
		s.applyFaults(w, r, kind, serve)
	})
}

// kindOf finds the endpoint mux will route r to. ServeMux.Handler returns
// a *route only for a request it routes, not for one it answers with 404,
// 405 or a redirect; a path with a dot segment, which the mux would
// redirect, is refused before routing.
func kindOf(mux *http.ServeMux, r *http.Request) RequestKind {
	if hasDotSegment(r.URL.EscapedPath()) {
		return RequestOther
	}
	h, _ := mux.Handler(r)
	if rt, ok := h.(*route); ok {
		return rt.kind
	}
	return RequestOther
}

func isRoute(h http.Handler) bool {
	_, ok := h.(*route)
	return ok
}

// jsonRouteErrors rewrites the mux's own 404 and 405 answers into Fastly's
// JSON error shape, keeping their headers (405's Allow); other answers,
// such as the redirect to a cleaned path, pass through.
type jsonRouteErrors struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool
}

func (w *jsonRouteErrors) WriteHeader(code int) {
	var msg string
	switch code {
	case http.StatusNotFound:
		msg = "Not found"
	case http.StatusMethodNotAllowed:
		msg = "Method not allowed"
	default:
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	w.Header().Del("X-Content-Type-Options")
	writeError(w.ResponseWriter, code, msg, "no endpoint for "+w.r.Method+" "+w.r.URL.EscapedPath())
}

// Write drops the mux's plain-text body once the JSON one is written.
func (w *jsonRouteErrors) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func hasDotSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// apiError is the JSON error body the store sends with 400, 404 and 413.
// Fastly's 412s have an empty body, and so do the store's.
type apiError struct {
	Msg    string `json:"msg"`
	Detail string `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, msg, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiError{Msg: msg, Detail: detail})
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeError(w, http.StatusBadRequest, "Bad request", fmt.Sprintf(format, args...))
}

// writeOutcome answers a failed store operation.
func (s *Store) writeOutcome(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errNoStore):
		writeError(w, http.StatusNotFound, "Record not found", "no KV store with id "+strconv.Quote(r.PathValue("store")))
	case errors.Is(err, errNotFound):
		writeError(w, http.StatusNotFound, "Record not found", "")
	case errors.Is(err, errPrecondition):
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusPreconditionFailed)
	case errors.Is(err, ErrDamaged):
		// The body leaves the file's path out: the log has it.
		s.log.Error("local store request failed", "method", r.Method, "err", err)
		writeError(w, http.StatusInternalServerError, "Internal error",
			"the local store's data file is damaged; check it with kvlocal -check-data (the local store's log names the file)")
	default:
		s.log.Error("local store request failed", "method", r.Method, "err", err)
		writeError(w, http.StatusInternalServerError, "Internal error", "")
	}
}
