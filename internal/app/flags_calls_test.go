package app

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/service"
)

// TestCallConcurrencyFlags checks each per-call concurrency setting: its
// default, its variable, the flag over the variable, and malformed or
// negative values refused with the flag named.
func TestCallConcurrencyFlags(t *testing.T) {
	t.Parallel()
	settings := []struct {
		flag, env string
		def       int
		got       func(*Config) int
	}{
		{"get-items-concurrency", "KVGATE_GET_ITEMS_CONCURRENCY", service.DefaultGetItemsConcurrency, func(c *Config) int { return c.GetItemsConcurrency }},
		{"copy-concurrency", "KVGATE_COPY_CONCURRENCY", service.DefaultCopyConcurrency, func(c *Config) int { return c.CopyConcurrency }},
		{"list-metadata-concurrency", "KVGATE_LIST_METADATA_CONCURRENCY", service.DefaultListMetadataConcurrency, func(c *Config) int { return c.ListMetadataConcurrency }},
		{"delete-concurrency", "KVGATE_DELETE_CONCURRENCY", service.DefaultDeleteConcurrency, func(c *Config) int { return c.Writes.DeleteConcurrency }},
	}
	for _, s := range settings {
		for _, tc := range []struct {
			name    string
			env     string
			args    []string
			want    int
			wantErr bool
		}{
			{name: "default", want: s.def},
			{name: "zero takes the default", env: "0", want: 0},
			{name: "environment", env: "4", want: 4},
			{name: "flag over environment", env: "4", args: []string{"-" + s.flag, "64"}, want: 64},
			{name: "malformed environment", env: "many", wantErr: true},
			{name: "malformed flag", args: []string{"-" + s.flag, "1.5"}, wantErr: true},
			{name: "negative", args: []string{"-" + s.flag, "-1"}, wantErr: true},
		} {
			t.Run(s.flag+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				cfg, err := gatewayConfig(map[string]string{s.env: tc.env}, tc.args)
				if (err != nil) != tc.wantErr {
					t.Fatalf("error = %v, want error %v", err, tc.wantErr)
				}
				if tc.name == "negative" && !strings.Contains(err.Error(), s.flag) {
					t.Errorf("error %q does not name -%s", err, s.flag)
				}
				if !tc.wantErr && s.got(cfg) != tc.want {
					t.Errorf("-%s = %d, want %d", s.flag, s.got(cfg), tc.want)
				}
			})
		}
	}
	// kvlocal serves no RPCs: it has none of them.
	fs := flag.NewFlagSet("kvlocal", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := LocalStoreFlags(fs, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if fs.Lookup(s.flag) != nil {
			t.Errorf("kvlocal has -%s", s.flag)
		}
	}
}
