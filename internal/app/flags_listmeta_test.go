package app

import (
	"flag"
	"io"
	"testing"

	"github.com/kvgate/kvgate/service"
)

func TestListMetadataConcurrencyFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     string
		args    []string
		want    int
		wantErr bool
	}{
		{name: "default", want: service.DefaultListMetadataConcurrency},
		{name: "environment", env: "8", want: 8},
		{name: "flag over environment", env: "8", args: []string{"-list-metadata-concurrency", "100"}, want: 100},
		{name: "malformed environment", env: "many", wantErr: true},
		{name: "malformed flag", args: []string{"-list-metadata-concurrency", "1.5"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg, err := GatewayFlags(fs, func(name string) string {
				if name == "KVGATE_LIST_METADATA_CONCURRENCY" {
					return tc.env
				}
				return ""
			})
			if err == nil {
				err = fs.Parse(tc.args)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && cfg.ListMetadataConcurrency != tc.want {
				t.Errorf("concurrency = %d, want %d", cfg.ListMetadataConcurrency, tc.want)
			}
		})
	}
}

func TestListMetadataConcurrencyValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n  int
		ok bool
	}{{0, true}, {1, true}, {256, true}, {-1, false}} {
		c := defaultGatewayConfig()
		c.ListMetadataConcurrency = tc.n
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("concurrency %d: Validate = %v, want ok %v", tc.n, err, tc.ok)
		}
	}
}
