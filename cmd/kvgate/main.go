// Command kvgate serves Fastly KV Store items as a typed RPC API over gRPC,
// gRPC-Web and Connect on one port. With FASTLY_API_TOKEN set it calls
// Fastly; without, it runs an embedded Fastly-compatible local store.
package main

import "github.com/kvgate/kvgate/internal/app"

func main() {
	app.Main("kvgate", app.GatewayFlags, app.Run)
}
