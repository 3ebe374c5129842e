package localstore

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// storeInfo is a store's details. Fastly shows only the id, the name and
// the two times; the location is kept because it was asked for, though no
// endpoint returns it.
type storeInfo struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Location string    `json:"location,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

// implicitStore is the details of a store that appeared by an item write
// rather than by POST /resources/stores/kv: it is named after its id, so
// that it is listed and described like any other store.
func implicitStore(id string, at time.Time) storeInfo {
	return storeInfo{ID: id, Name: id, Created: at, Updated: at}
}

var (
	// errNoStore is an item call on a store that does not exist: any
	// under Config.StrictStoreIDs, a listing without.
	errNoStore = fmt.Errorf("%w: no such KV store", errNotFound)
	// errStoreExists is a new store whose id is already used.
	errStoreExists = errors.New("store id in use")
	// errNameTaken is a store name another store already has.
	errNameTaken = errors.New("store name in use")
	// errNotEmpty is the deletion of a store that still holds items.
	errNotEmpty = errors.New("store not empty")
)

// storeIDLen and storeIDAlphabet make ids of the form Fastly's take: the
// recorded one, iaa48y0oxw13s12xpfdkk9, is 22 lowercase letters and digits.
const (
	storeIDLen      = 22
	storeIDAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// newStoreID draws a random store id. Bytes at or above the largest
// multiple of the alphabet's size are redrawn, so that every character is
// equally likely.
func newStoreID() string {
	const limit = 256 - 256%len(storeIDAlphabet)
	id := make([]byte, 0, storeIDLen)
	buf := make([]byte, storeIDLen*2)
	for len(id) < storeIDLen {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails
		for _, b := range buf {
			if int(b) < limit && len(id) < storeIDLen {
				id = append(id, storeIDAlphabet[int(b)%len(storeIDAlphabet)])
			}
		}
	}
	return string(id)
}

// storeLocations are the values Fastly's create call takes in its location
// query (fastly/cli's kvstore create offers exactly these).
var storeLocations = []string{"US", "EU", "ASIA", "AUS"}

// maxStoreBody bounds the JSON body of a create or rename; it only holds a
// name.
const maxStoreBody = 64 << 10

// storeTimeFormat is how Fastly writes created_at and updated_at: UTC, to
// the second, with a space between date and time ("2025-06-23 19:41:15").
const storeTimeFormat = "2006-01-02 15:04:05"

// storeDetails is a store as Fastly answers it, in the field order it
// sends.
type storeDetails struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

func detailsOf(info storeInfo) storeDetails {
	return storeDetails{
		ID:        info.ID,
		Name:      info.Name,
		CreatedAt: info.Created.UTC().Format(storeTimeFormat),
		UpdatedAt: info.Updated.UTC().Format(storeTimeFormat),
	}
}

// storeListMeta is the meta object of a store listing. The recording of an
// empty account shows {"limit":1000,"total":0}; total is taken to count
// every store the listing covers (only those of the name asked for, with
// name), and next_cursor is left out on the last page, as the key listing
// does.
type storeListMeta struct {
	Limit      int    `json:"limit"`
	NextCursor string `json:"next_cursor,omitempty"`
	Total      int    `json:"total"`
}

type storeListBody struct {
	Data []storeDetails `json:"data"`
	Meta storeListMeta  `json:"meta"`
}

// requireStore refuses an item call on a store that does not exist when
// store ids are strict. Without strict ids a store is created by its first
// write, as kvgate's one-command start needs. The check and the write are
// separate steps: a store deleted between them is created again by the
// write, as it would be without strict ids.
func (s *Store) requireStore(store string) error {
	if !s.strictIDs {
		return nil
	}
	ok, err := s.backend.hasStore(store)
	if err != nil {
		return err
	}
	if !ok {
		return errNoStore
	}
	return nil
}

// readStoreName reads the {"name": ...} body of a create or rename.
func readStoreName(r *http.Request) (string, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxStoreBody+1))
	if err != nil {
		return "", fmt.Errorf("reading body: %w", err)
	}
	if len(body) > maxStoreBody {
		return "", errors.New("body too large")
	}
	var req struct {
		Name *string `json:"name"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", fmt.Errorf("body must be a JSON object with a name: %v", err)
	}
	switch {
	case req.Name == nil || *req.Name == "":
		return "", errors.New("name is required")
	case !utf8.ValidString(*req.Name):
		return "", errors.New("name must be valid UTF-8")
	}
	return *req.Name, nil
}

// writeStoreOutcome answers a failed store-level call.
func (s *Store) writeStoreOutcome(w http.ResponseWriter, r *http.Request, id string, err error) {
	switch {
	case errors.Is(err, errNotFound):
		writeError(w, http.StatusNotFound, "Record not found", "no KV store with id "+strconv.Quote(id))
	case errors.Is(err, errNameTaken):
		// Not recorded, nor documented: 409, the status Fastly gives the
		// other store conflict (a non-empty delete), in its JSON error shape.
		writeError(w, http.StatusConflict, "Conflict", "a KV store with this name already exists")
	case errors.Is(err, errNotEmpty):
		// Documented: "A KV store must be empty before it can be deleted.
		// Attempting to delete a KV store that contains items will result in
		// a response with a 409 status code."
		writeError(w, http.StatusConflict, "Conflict", "A KV store must be empty before it can be deleted")
	default:
		s.writeOutcome(w, r, err)
	}
}

func writeStoreJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "Internal error", "")
		return
	}
	writeJSON(w, status, body)
}

// handleCreateStore serves POST /resources/stores/kv: 201 with the new
// store's details, as recorded.
func (s *Store) handleCreateStore(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	location := q.Get("location")
	if q.Has("location") && !slices.Contains(storeLocations, location) {
		// Fastly's answer to an unknown location is not recorded; a 400 in
		// its JSON error shape is what a client can act on.
		badRequest(w, "location must be one of %s", strings.Join(storeLocations, ", "))
		return
	}
	name, err := readStoreName(r)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	now := s.now().UTC()
	info := storeInfo{Name: name, Location: location, Created: now, Updated: now}
	// An id drawn twice is astronomically unlikely; a few draws make it
	// impossible in practice without looping for ever.
	for range 3 {
		info.ID = newStoreID()
		if err = s.backend.saveStore(info, true); !errors.Is(err, errStoreExists) {
			break
		}
	}
	if err != nil {
		s.writeStoreOutcome(w, r, info.ID, err)
		return
	}
	writeStoreJSON(w, http.StatusCreated, detailsOf(info))
}

// handleListStores serves GET /resources/stores/kv: a page of stores in id
// order, Fastly's default page of 1000, and with name only the store of
// that name (an empty list when there is none).
func (s *Store) handleListStores(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := pageLimit(w, q)
	if !ok {
		return
	}
	meta := storeListMeta{Limit: limit}
	var after string
	if c := q.Get("cursor"); c != "" {
		if after, ok = decodeFastlyCursor(c); !ok {
			badRequest(w, "invalid cursor")
			return
		}
	}
	page, more, total, err := s.backend.listStores(q.Get("name"), after, meta.Limit)
	if err != nil {
		s.writeOutcome(w, r, err)
		return
	}
	data := make([]storeDetails, len(page))
	for i, info := range page {
		data[i] = detailsOf(info)
	}
	if more && len(page) > 0 {
		meta.NextCursor = encodeFastlyCursor(page[len(page)-1].ID)
	}
	meta.Total = total
	writeStoreJSON(w, http.StatusOK, storeListBody{Data: data, Meta: meta})
}

// existingStore returns the details of store id, or errNotFound.
func (s *Store) existingStore(id string) (*storeInfo, error) {
	info, err := s.backend.getStore(id)
	if err == nil && info == nil {
		err = errNotFound
	}
	return info, err
}

// handleGetStore serves GET /resources/stores/kv/{store}.
func (s *Store) handleGetStore(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("store")
	info, err := s.existingStore(id)
	if err != nil {
		s.writeStoreOutcome(w, r, id, err)
		return
	}
	writeStoreJSON(w, http.StatusOK, detailsOf(*info))
}

// handleRenameStore serves PUT /resources/stores/kv/{store}: it renames
// the store and, as the create call does, answers with its details (the
// answer is not recorded).
func (s *Store) handleRenameStore(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("store")
	name, err := readStoreName(r)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	info, err := s.existingStore(id)
	if err == nil {
		info.Name, info.Updated = name, s.now().UTC()
		err = s.backend.saveStore(*info, false)
	}
	if err != nil {
		s.writeStoreOutcome(w, r, id, err)
		return
	}
	writeStoreJSON(w, http.StatusOK, detailsOf(*info))
}

// handleDeleteStore serves DELETE /resources/stores/kv/{store}: 204 with no
// body, as recorded, for an empty store.
func (s *Store) handleDeleteStore(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("store")
	if err := s.backend.deleteStore(id, s.now()); err != nil {
		s.writeStoreOutcome(w, r, id, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
