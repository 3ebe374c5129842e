// Package soak holds kvgate's fault soak, TestSoak: a large upload and a
// mix of unary calls through the local store while it answers about one
// request in ten with 429, 500 or 503 and drops about one connection in a
// hundred, followed by a comparison of the store with everything kvgate
// acknowledged. TestSoakDeleteKeys is its DeleteKeys phase: deletions by
// prefix and by list through the same faults, resumed from their cursors
// whenever they end early, then every key accounted for (-soak.deletes
// keys each way). It has no code outside its tests.
//
//	go test -race -count=1 ./soak/                     # the short run
//	go test -count=1 -timeout 60m -v -run TestSoak ./soak/ \
//	    -soak.items=100000 -soak.unary=10000           # the full run (make soak)
package soak
