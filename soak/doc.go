// Package soak holds kvgate's fault soak: kvgate in front of the local
// store while it answers about one request in ten with 429, 500 or 503
// and drops about one connection in a hundred. It has no code outside its
// tests, one per phase:
//
//   - TestSoak: a large upload and a mix of unary calls, followed by a
//     comparison of the store with everything kvgate acknowledged.
//
//   - TestSoakGetItems: GetItems calls, each answer checked against what
//     the store holds.
//
//   - TestSoakWatch: WatchItems streams follow keys changed behind
//     kvgate's back while the watches' listings and HEADs meet the faults;
//     they must report no state a key never had and come to the store's
//     final state.
//
//   - TestSoakDeleteKeys: deletions by prefix and by list, resumed from
//     their cursors whenever they end early, then every key accounted for
//     (-soak.deletes keys each way).
//
//   - TestSoakCopyItems: copies resumed from their cursors whenever they
//     end early; every item copied once, with its value and metadata.
//
//   - TestSoakListMetadata: listings with include_metadata while keys are
//     deleted and rewritten; each stable key once, in order, with its item.
//
// Run them with:
//
//	go test -race -count=1 ./soak/                     # the short run
//	go test -count=1 -timeout 60m -v -run TestSoak ./soak/ \
//	    -soak.items=100000 -soak.unary=10000 -soak.getitems=1000  # the full run (make soak)
package soak
