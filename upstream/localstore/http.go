package localstore

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kvgate/kvgate/upstream"
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

// target reads and checks the store id and key of an item request.
func target(w http.ResponseWriter, r *http.Request) (store, key string, ok bool) {
	store, key = r.PathValue("store"), r.PathValue("key")
	if store == "" {
		badRequest(w, "missing store id")
		return "", "", false
	}
	if err := upstream.CheckKey(key); err != nil {
		badRequest(w, "invalid key: key %v", err)
		return "", "", false
	}
	return store, key, true
}

func (s *Store) handleGet(w http.ResponseWriter, r *http.Request) {
	store, key, ok := target(w, r)
	if !ok {
		return
	}
	rec, err := s.getItem(store, key)
	if err != nil {
		s.writeOutcome(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(rec.Value)))
	h.Set("Stored-Content-Length", strconv.Itoa(len(rec.Value)))
	h.Set("Generation", strconv.FormatUint(rec.Generation, 10))
	// Fastly always sends Metadata, empty when none is set.
	h["Metadata"] = []string{rec.Metadata}
	h.Set("Last-Modified", rec.Modified.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.Value)
	}
}

// boolFlag reads a query flag such as add=true.
func boolFlag(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("query parameter %s must be true or false", name)
	}
	return b, nil
}

// generationHeader reads if-generation-match.
func generationHeader(r *http.Request) (*uint64, error) {
	v := r.Header.Get("If-Generation-Match")
	if v == "" {
		return nil, nil
	}
	g, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return nil, errors.New("if-generation-match must be an unsigned 64-bit integer")
	}
	return &g, nil
}

func (s *Store) handlePut(w http.ResponseWriter, r *http.Request) {
	store, key, ok := target(w, r)
	if !ok {
		return
	}
	p, err := s.readPut(r)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "Request entity too large",
				fmt.Sprintf("values are limited to %d bytes", s.maxValue))
			return
		}
		badRequest(w, "%v", err)
		return
	}
	if err := s.putItem(store, key, p); err != nil {
		s.writeOutcome(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

var errTooLarge = errors.New("value too large")

// readPut parses a single-item PUT: its flags, headers and body.
func (s *Store) readPut(r *http.Request) (putRequest, error) {
	var p putRequest
	modes := 0
	for _, f := range []struct {
		name string
		mode putMode
	}{{"add", modeAdd}, {"append", modeAppend}, {"prepend", modePrepend}} {
		set, err := boolFlag(r, f.name)
		if err != nil {
			return p, err
		}
		if set {
			p.mode = f.mode
			modes++
		}
	}
	if modes > 1 {
		return p, errors.New("add, append and prepend exclude each other")
	}
	if _, err := boolFlag(r, "background_fetch"); err != nil {
		return p, err
	}
	var err error
	if p.ifGen, err = generationHeader(r); err != nil {
		return p, err
	}
	p.metadata = r.Header.Get("Metadata")
	if err := upstream.CheckMetadata(p.metadata); err != nil {
		return p, fmt.Errorf("invalid metadata: metadata %w", err)
	}
	if v := headerValue(r.Header, "time_to_live_sec"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return p, errBadTTL
		}
		if p.ttl, err = ttlFromSeconds(secs); err != nil {
			return p, err
		}
	}
	if r.ContentLength > s.maxValue {
		return p, errTooLarge
	}
	p.value, err = readBody(r, s.maxValue)
	return p, err
}

// headerValue looks a header up by its exact name first: Fastly's
// time_to_live_sec has underscores, which Go does not canonicalise.
func headerValue(h http.Header, name string) string {
	if v, ok := h[name]; ok && len(v) > 0 {
		return v[0]
	}
	return h.Get(name)
}

// readBody reads a request body of at most limit bytes into one buffer.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength >= 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, fmt.Errorf("reading body: %w", err)
		}
		return buf, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if int64(len(buf)) > limit {
		return nil, errTooLarge
	}
	return buf, nil
}

func (s *Store) handleDelete(w http.ResponseWriter, r *http.Request) {
	store, key, ok := target(w, r)
	if !ok {
		return
	}
	force, err := boolFlag(r, "force")
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	ifGen, err := generationHeader(r)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	if err := s.deleteItem(store, key, force, ifGen); err != nil {
		s.writeOutcome(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listMeta is the meta object of a listing, in the field order Fastly sends.
type listMeta struct {
	Limit       int    `json:"limit"`
	NextCursor  string `json:"next_cursor,omitempty"`
	Prefix      string `json:"prefix,omitempty"`
	Consistency string `json:"consistency,omitempty"`
}

type listBody struct {
	Data []string `json:"data"`
	Meta listMeta `json:"meta"`
}

func (s *Store) handleList(w http.ResponseWriter, r *http.Request) {
	store := r.PathValue("store")
	q := r.URL.Query()
	meta := listMeta{Limit: upstream.DefaultPageSize, Prefix: q.Get("prefix")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			badRequest(w, "limit must be a positive integer")
			return
		}
		meta.Limit = min(n, upstream.DefaultPageSize)
	}
	switch c := q.Get("consistency"); c {
	case "", "strong":
	case "eventual":
		// Fastly echoes only the eventual level.
		meta.Consistency = c
	default:
		badRequest(w, "consistency must be strong or eventual")
		return
	}
	if err := upstream.CheckPrefixQuery(meta.Prefix); err != nil {
		badRequest(w, "invalid prefix: prefix %v", err)
		return
	}
	var after string
	if c := q.Get("cursor"); c != "" {
		var ok bool
		if after, ok = decodeFastlyCursor(c); !ok {
			badRequest(w, "invalid cursor")
			return
		}
	}
	keys, more, err := s.listKeys(store, meta.Prefix, after, meta.Limit)
	if err != nil {
		s.writeOutcome(w, r, err)
		return
	}
	if keys == nil {
		keys = []string{}
	}
	if more && len(keys) > 0 {
		meta.NextCursor = encodeFastlyCursor(keys[len(keys)-1])
	}
	body, err := json.Marshal(listBody{Data: keys, Meta: meta})
	if err != nil {
		s.writeOutcome(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// encodeFastlyCursor makes a listing cursor the way Fastly's appear to be
// made: standard base64 of a protobuf message whose field 1 is the last key
// returned. A cursor names a key, not a position, so paging stays correct
// while keys are written during an enumeration.
func encodeFastlyCursor(lastKey string) string {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, lastKey)
	return base64.StdEncoding.EncodeToString(b)
}

// decodeFastlyCursor reads the last key back from a cursor.
func decodeFastlyCursor(cursor string) (string, bool) {
	b, err := base64.StdEncoding.DecodeString(cursor)
	if err != nil {
		return "", false
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != 1 || typ != protowire.BytesType {
		return "", false
	}
	key, m := protowire.ConsumeString(b[n:])
	if m < 0 || n+m != len(b) {
		return "", false
	}
	return key, true
}
