// Package soak holds kvgate's fault soak, TestSoak: a large upload and a
// mix of unary calls through the local store while it answers about one
// request in ten with 429, 500 or 503 and drops about one connection in a
// hundred, followed by a comparison of the store with everything kvgate
// acknowledged. TestSoakWatch is its watch phase: WatchItems streams follow
// keys changed behind kvgate's back while the watches' listings and HEADs
// meet the same faults, and must report no state a key never had and come
// to the store's final state. It has no code outside its tests.
//
//	go test -race -count=1 ./soak/                     # the short run
//	go test -count=1 -timeout 60m -v -run TestSoak ./soak/ \
//	    -soak.items=100000 -soak.unary=10000           # the full run (make soak)
package soak
