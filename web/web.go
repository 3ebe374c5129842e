// Package web is kvgate's browser app: a page, its stylesheet and its
// script (bundled from src/ into dist/ by `make web`), embedded in the
// binary and served on the RPC port beside the Connect routes.
package web

import (
	"bytes"
	"embed"
	"net/http"
	"time"
)

//go:embed index.html app.css dist/app.js
var files embed.FS

// contentSecurityPolicy lets the page load and call only its own origin:
// no inline script or style, no frames, no other hosts.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one file the app serves, with its content type.
type asset struct {
	file, contentType string
}

// assets maps the app's paths to its files. Nothing else is the app's:
// every other path, the RPC routes among them, goes to the next handler.
var assets = map[string]asset{
	"/":        {"index.html", "text/html; charset=utf-8"},
	"/app.js":  {"dist/app.js", "text/javascript; charset=utf-8"},
	"/app.css": {"app.css", "text/css; charset=utf-8"},
}

// Mount serves the app for GET and HEAD requests of its own paths and
// passes every other request to next.
func Mount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		body, err := files.ReadFile(a.file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		// The app changes only with the binary: a browser revalidates.
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, a.file, time.Time{}, bytes.NewReader(body))
	})
}
