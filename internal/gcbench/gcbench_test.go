package gcbench

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestSmoke runs the group commit benchmark at a smoke size against an
// in-process local store with a little latency, and checks that every
// cell wrote and that the table has a row per cell. It asserts no timing
// or ratio: those are what the full run (make bench-group-commit) is for.
func TestSmoke(t *testing.T) {
	t.Parallel()
	store, err := localstore.Open(localstore.Config{Faults: localstore.Faults{Latency: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv := httptest.NewServer(store.Handler())
	t.Cleanup(srv.Close)

	cfg := Config{UpstreamURL: srv.URL, Writers: []int{1, 20}, Rounds: 2, Duration: 400 * time.Millisecond, Warmup: 100 * time.Millisecond, ValueBytes: 64}
	rows, err := Run(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows; want 4", len(rows))
	}
	for _, r := range rows {
		if !r.GroupCommit && r.Requests < r.Items {
			t.Errorf("%d writers without group commit: %d requests for %d items; want one or more per item", r.Writers, r.Requests, r.Items)
		}
	}
	var table strings.Builder
	if err := WriteMarkdown(&table, rows); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(table.String(), "\n"); n != 2+len(rows) {
		t.Errorf("table has %d lines; want %d:\n%s", n, 2+len(rows), table.String())
	}
	if _, _, _, ok := Targets(rows); !ok {
		t.Error("Targets found no cell with and without group commit")
	}
	t.Logf("\n%s", table.String())
}
