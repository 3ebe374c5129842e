// Package browser_test calls kvgate from Chromium, as a web app served from
// another origin would: Debian's chromium, driven by playwright-core
// (drive.mjs), loads a page whose script (page.ts, bundled by esbuild with
// the generated client and Connect-Web) calls kvgate over the Connect
// protocol and gRPC-Web; another (cache.ts) reads an item over Connect GET
// through the browser's HTTP cache. Without chromium or node_modules the
// tests skip, unless CI is set: then they fail.
package browser_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/crossorigin"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
)

// transports are the page's transports, as it names them.
var transports = []string{"connect-json", "connect-proto", "grpc-web"}

// rpcError is how the page describes a call's outcome: "ok", or an error
// with its code and details.
type rpcError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Cause     string `json:"cause"`
	ErrorInfo *struct {
		Reason   string            `json:"reason"`
		Domain   string            `json:"domain"`
		Metadata map[string]string `json:"metadata"`
	} `json:"errorInfo"`
	BadRequestFields []string `json:"badRequestFields"`
}

// callsResult is what the page saw making every call on one transport.
type callsResult struct {
	Failed *rpcError `json:"failed"`
	Get    struct {
		Value         string `json:"value"`
		Metadata      string `json:"metadata"`
		HasGeneration bool   `json:"hasGeneration"`
	} `json:"get"`
	PutItems struct {
		Written  int `json:"written"`
		Failures int `json:"failures"`
	} `json:"putItems"`
	ListKeys      []string `json:"listKeys"`
	StreamKeys    []string `json:"streamKeys"`
	GetDeleted    rpcError `json:"getDeleted"`
	GetInvalid    rpcError `json:"getInvalid"`
	BatchPutItems rpcError `json:"batchPutItems"`
}

// refusedResult is what a page from an origin not on the list saw.
type refusedResult struct {
	Failed *rpcError `json:"failed"`
	Get    rpcError  `json:"get"`
	Put    rpcError  `json:"put"`
}

func TestBrowserCORS(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	bundle := b.bundle(t, "page.ts")

	// Two pages on loopback, each its own origin (another port than
	// kvgate's); only the first is on kvgate's list.
	allowed, refused := servePage(t, bundle, nil), servePage(t, bundle, nil)
	st := kvtest.Start(t, kvtest.Options{CORS: crossorigin.Config{Origins: []string{allowed.URL}}})
	pageURL := func(base, mode string) string {
		return base + "/?" + url.Values{"kvgate": {st.URL}, "store": {mode}, "mode": {mode}}.Encode()
	}
	pages := b.drive(t, pageURL(allowed.URL, "calls"), pageURL(refused.URL, "refused"))

	for _, name := range transports {
		t.Run("calls/"+name, func(t *testing.T) {
			var res callsResult
			decode(t, pages[0].Result, name, &res)
			checkCalls(t, res)
		})
		t.Run("refused/"+name, func(t *testing.T) {
			var res refusedResult
			decode(t, pages[1].Result, name, &res)
			if res.Failed != nil || res.Get.Code == "ok" || res.Put.Code == "ok" {
				t.Errorf("a page from an origin not on the list got through: %+v", res)
			}
			// The write never reached kvgate: the browser stopped it at
			// the refused preflight.
			_, err := st.NewClient(http.DefaultClient).GetItem(t.Context(), &kvv1.GetItemRequest{StoreId: "refused-" + name, Key: "refused"})
			testutil.WantCode(t, "reading the refused write", err, connect.CodeNotFound)
		})
	}
}

// checkCalls checks what the page saw making every call on one transport.
func checkCalls(t *testing.T, res callsResult) {
	t.Helper()
	if res.Failed != nil {
		t.Fatalf("a call failed: %+v", *res.Failed)
	}
	if g := res.Get; g.Value != "hello" || g.Metadata != "m" || !g.HasGeneration {
		t.Errorf("GetItem saw %+v, want hello, m and a generation", g)
	}
	if res.PutItems.Written != 3 || res.PutItems.Failures != 0 {
		t.Errorf("PutItems saw %+v, want 3 written", res.PutItems)
	}
	want := []string{"a", "b", "c", "greeting"}
	if !slices.Equal(res.ListKeys, want) || !slices.Equal(res.StreamKeys, want) {
		t.Errorf("ListKeys saw %q and StreamKeys %q, want %q", res.ListKeys, res.StreamKeys, want)
	}
	if e := res.GetDeleted; e.Code != "not_found" || e.ErrorInfo == nil ||
		e.ErrorInfo.Reason != "NOT_FOUND" || e.ErrorInfo.Domain != "kvgate" || e.ErrorInfo.Metadata["http_status"] != "404" {
		t.Errorf("GetItem of a deleted item saw %+v, want not_found with ErrorInfo NOT_FOUND/kvgate/404", e)
	}
	if e := res.GetInvalid; e.Code != "invalid_argument" || !slices.Contains(e.BadRequestFields, "key") {
		t.Errorf("GetItem of an invalid key saw %+v, want invalid_argument with a BadRequest violation of key", e)
	}
	// Browsers cannot stream a request body: Connect-Web refuses client
	// streaming before sending anything.
	if res.BatchPutItems.Code == "ok" {
		t.Error("BatchPutItems succeeded in a browser")
	}
}

// decode reads the page's result for one transport into v.
func decode(t *testing.T, page map[string]json.RawMessage, transport string, v any) {
	t.Helper()
	if err := json.Unmarshal(page[transport], v); err != nil {
		t.Fatalf("the page's %s result %s: %v", transport, page[transport], err)
	}
	t.Logf("%s: %s", transport, page[transport])
}

// browser is what drives a page: Chromium, and the repository whose
// node_modules hold playwright-core and esbuild.
type browser struct {
	root, chromium string
}

// newBrowser finds the browser and the tools, or skips the test (fails it
// under CI) without them.
func newBrowser(t *testing.T) browser {
	t.Helper()
	root := kvtest.RepoRoot(t)
	chromium := testutil.RequireBrowser(t, root, filepath.Join("playwright-core", "package.json"), filepath.Join(".bin", "esbuild"))
	return browser{root: root, chromium: chromium}
}

// bundle bundles the page script entry (a file of test/browser) with what
// it imports, and returns the bundle's path.
func (b browser) bundle(t *testing.T, entry string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "page.js")
	run(t, b.root, nil, filepath.Join(b.root, "node_modules", ".bin", "esbuild"), filepath.Join("test", "browser", entry),
		"--bundle", "--platform=browser", "--format=esm", "--target=es2022", "--log-level=warning", "--outfile="+out)
	return out
}

// drivenPage is what drive.mjs saw on one page: the results its script
// published, and the responses the browser got from other origins, in
// order.
type drivenPage struct {
	Result    map[string]json.RawMessage `json:"result"`
	Responses []seenResponse             `json:"responses"`
}

// seenResponse is a request and its response as the browser's network
// saw them: the If-None-Match it sent, the status, ETag and Cache-Control
// it got, and the bytes it received (headers and body, as encoded on the
// wire).
type seenResponse struct {
	Method       string `json:"method"`
	URL          string `json:"url"`
	IfNoneMatch  string `json:"ifNoneMatch"`
	Status       int    `json:"status"`
	ETag         string `json:"etag"`
	CacheControl string `json:"cacheControl"`
	EncodedBytes int64  `json:"encodedBytes"`
}

// drive loads each page in one Chromium, one after the other, and returns
// what it saw on each.
func (b browser) drive(t *testing.T, pageURLs ...string) []drivenPage {
	t.Helper()
	out := run(t, b.root, []string{"CHROMIUM=" + b.chromium}, "node", append([]string{filepath.Join("test", "browser", "drive.mjs")}, pageURLs...)...)
	var pages []drivenPage
	if err := json.Unmarshal(out, &pages); err != nil || len(pages) != len(pageURLs) {
		t.Fatalf("driver printed %q: want a JSON array of %d pages (%v)", out, len(pageURLs), err)
	}
	return pages
}

// servePage serves the test page, with its bundled script, on a loopback
// port of its own; routes, when set, adds the test's own routes.
func servePage(t *testing.T, bundle string, routes func(*http.ServeMux)) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	if routes != nil {
		routes(mux)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><meta charset="utf-8"><title>kvgate browser test</title><script type="module" src="/page.js"></script>`)
	})
	mux.HandleFunc("GET /page.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, bundle) })
	// The browser asks for an icon; none, rather than a 404 in the log.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// run runs name with args in dir, with env added, and returns its stdout;
// it fails the test, showing stderr, unless the command succeeds.
func run(t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", name, err, stdout.Bytes(), stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Logf("%s stderr:\n%s", filepath.Base(name), stderr.Bytes())
	}
	return stdout.Bytes()
}
