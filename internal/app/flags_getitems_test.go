package app

import (
	"flag"
	"io"
	"testing"
)

func TestGetItemsConcurrencyFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     string
		args    []string
		want    int
		wantErr bool
	}{
		{name: "default", want: 16},
		{name: "environment", env: "4", want: 4},
		{name: "flag over environment", env: "4", args: []string{"-get-items-concurrency", "64"}, want: 64},
		{name: "malformed environment", env: "many", wantErr: true},
		{name: "negative", args: []string{"-get-items-concurrency", "-1"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := gatewayConfig(map[string]string{"KVGATE_GET_ITEMS_CONCURRENCY": tc.env}, tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && cfg.GetItemsConcurrency != tc.want {
				t.Errorf("concurrency = %d, want %d", cfg.GetItemsConcurrency, tc.want)
			}
		})
	}
	// kvlocal serves no RPCs: it has no such flag.
	fs := flag.NewFlagSet("kvlocal", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := LocalStoreFlags(fs, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if fs.Lookup("get-items-concurrency") != nil {
		t.Error("kvlocal has -get-items-concurrency")
	}
}
