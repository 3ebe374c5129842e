package localstore

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kvgate/kvgate/upstream"
)

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

// pageLimit reads a listing's limit query: Fastly's default page of 1000
// when absent, at most 1000, and a positive integer or the request is
// answered 400 and ok is false.
func pageLimit(w http.ResponseWriter, q url.Values) (limit int, ok bool) {
	v := q.Get("limit")
	if v == "" {
		return upstream.DefaultPageSize, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		badRequest(w, "limit must be a positive integer")
		return 0, false
	}
	return min(n, upstream.DefaultPageSize), true
}

func (s *Store) handleList(w http.ResponseWriter, r *http.Request) {
	store := r.PathValue("store")
	q := r.URL.Query()
	limit, ok := pageLimit(w, q)
	if !ok {
		return
	}
	meta := listMeta{Limit: limit, Prefix: q.Get("prefix")}
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
