// Command kvlocal serves kvgate's local store on its own: a Fastly-
// compatible KV Store REST API (/resources/stores/kv/...) that any Fastly
// client can be pointed at, for example with FASTLY_API_URL.
package main

import "github.com/kvgate/kvgate/internal/app"

func main() {
	// Listens beside a kvgate on its default 8080.
	app.Main("kvlocal", "127.0.0.1:8081", app.RunLocalStore)
}
