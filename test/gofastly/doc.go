// Package gofastly drives the local store with Fastly's own Go client,
// github.com/fastly/go-fastly, unmodified: every KV store and KV store item
// function it offers, over real HTTP on a loopback listener. The client is a
// test-only dependency; this package holds only tests.
package gofastly
