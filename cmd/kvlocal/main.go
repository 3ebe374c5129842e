// Command kvlocal serves kvgate's local store on its own: a Fastly-
// compatible KV Store REST API (/resources/stores/kv/...) that any Fastly
// client can be pointed at, for example with FASTLY_API_URL. It reads only
// the flags that concern the store, and listens beside a kvgate, on
// 127.0.0.1:8081 by default.
package main

import "github.com/kvgate/kvgate/internal/app"

func main() {
	app.Main("kvlocal", app.LocalStoreFlags, app.RunLocalStore)
}
