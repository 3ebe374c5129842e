package telemetry_test

import (
	"strings"
	"testing"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/telemetry"
	"github.com/kvgate/kvgate/internal/testutil"
)

// TestMetricsShowOwnWriteBudget runs kvgate with -write-budget 3: the
// remaining budget reads 3 before any write and 0 after three, and the
// fourth write, refused unsent, is counted as not_sent.
func TestMetricsShowOwnWriteBudget(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{
		Telemetry: telemetry.Config{AdminListen: adminLoopback},
		Writes:    app.WriteConfig{BudgetPerHour: 3},
	})
	const gauge = "kvgate_upstream_write_budget_remaining"
	wantMetrics(t, st.AdminURL, gauge+" 3")
	kv := st.NewClient(kvtest.H2CClient())
	for i := range 3 {
		if _, err := kv.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: []byte{byte(i)}}); err != nil {
			t.Fatalf("PutItem %d: %v", i, err)
		}
	}
	_, err := kv.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: []byte("4")})
	testutil.WantCode(t, "PutItem past the write budget", err, connect.CodeResourceExhausted)
	wantMetrics(t, st.AdminURL, gauge+" 0",
		`kvgate_upstream_requests_total{method="PUT",op="put_item",status="200"} 3`,
		`kvgate_upstream_requests_total{method="PUT",op="put_item",status="not_sent"} 1`)
}

// wantMetrics checks that /metrics holds every line of want.
func wantMetrics(t *testing.T, adminURL string, want ...string) {
	t.Helper()
	_, body := getText(t, adminURL+"/metrics")
	for _, w := range want {
		if !strings.Contains(body, w+"\n") {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
