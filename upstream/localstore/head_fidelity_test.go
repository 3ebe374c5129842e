package localstore_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/kvgate/kvgate/internal/cassette"
)

// checkHead sends a HEAD for the item a recorded GET read, right after the
// local store answered that GET (got), and compares it with both: Fastly
// documents HEAD as the GET without its body, so the headers clients read
// (Stored-Content-Length, Metadata, Content-Type) are the recorded GET's,
// and the Generation and Last-Modified the local GET's own.
func (r *replayer) checkHead(t *testing.T, in cassette.Request, rec cassette.Response, got localResponse) {
	t.Helper()
	if rec.Code != http.StatusOK || got.code != http.StatusOK {
		return
	}
	head := in
	head.Method, head.Body = http.MethodHead, ""
	h := r.replay(t, head)
	if h.code != http.StatusOK || h.body != "" {
		t.Fatalf("HEAD: status %q, %d body bytes; want 200 and no body", h.status, len(h.body))
	}
	for _, name := range []string{"Content-Type", "Metadata", "Stored-Content-Length"} {
		want, inRec := rec.Headers[name]
		have, inHead := h.header[name]
		if inRec != inHead || !slices.Equal(have, want) {
			t.Errorf("HEAD header %s = %q (present %t), recorded GET's %q (present %t)", name, have, inHead, want, inRec)
		}
	}
	for _, name := range []string{"Generation", "Last-Modified", "Cache-Control"} {
		if have, want := h.header[name], got.header[name]; len(want) == 0 || !slices.Equal(have, want) {
			t.Errorf("HEAD header %s = %q; the GET's was %q", name, have, want)
		}
	}
	if h.contentLength != got.contentLength {
		t.Errorf("HEAD Content-Length %d; the GET's was %d", h.contentLength, got.contentLength)
	}
}
