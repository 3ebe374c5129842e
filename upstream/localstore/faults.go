package localstore

import (
	"net/http"
	"time"
)

// Faults is the trouble the store injects into every request, so clients
// can be tested against a slow or failing upstream. The zero value injects
// nothing. It is meant to grow (random latency, 429s and 5xx answers,
// dropped connections); each new field must keep zero meaning "none".
type Faults struct {
	// Latency delays every request by this long before it is handled,
	// measured on the real clock (Options.Now only drives expiry). A
	// request whose context ends during the delay, because its client gave
	// up, is not handled at all. Zero or negative adds no delay.
	//
	// Go's HTTP/1 server notices a client going away only once the request
	// body has been read, so a cancelled request with an unread body (a
	// PUT, a batch) waits out the delay; one without a body (GET, HEAD,
	// DELETE, a listing) stops waiting at once.
	Latency time.Duration
}

// SetFaults replaces the faults injected into requests that arrive from
// now on; requests already waiting keep theirs. It is safe to call while
// the store serves requests.
func (s *Store) SetFaults(f Faults) { s.faults.Store(&f) }

// Faults returns the faults currently injected.
func (s *Store) Faults() Faults { return *s.faults.Load() }

// withFaults applies the current faults to each request before next
// handles it.
func (s *Store) withFaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := s.Faults()
		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				// The client is gone, or the server is shutting down; the
				// answer is for the latter.
				writeError(w, http.StatusServiceUnavailable, "Request cancelled", "the request ended during the injected latency")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
