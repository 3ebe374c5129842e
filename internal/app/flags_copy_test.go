package app

import (
	"flag"
	"io"
	"testing"

	"github.com/kvgate/kvgate/service"
)

func TestCopyConcurrencyFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     string
		args    []string
		want    int
		wantErr bool
	}{
		{name: "default", want: service.DefaultCopyConcurrency},
		{name: "environment", env: "4", want: 4},
		{name: "flag over environment", env: "4", args: []string{"-copy-concurrency", "32"}, want: 32},
		{name: "malformed environment", env: "many", wantErr: true},
		{name: "malformed flag", args: []string{"-copy-concurrency", "1.5"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg, err := GatewayFlags(fs, func(name string) string {
				if name == "KVGATE_COPY_CONCURRENCY" {
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
			if !tc.wantErr && cfg.CopyConcurrency != tc.want {
				t.Errorf("copy concurrency = %d, want %d", cfg.CopyConcurrency, tc.want)
			}
		})
	}
}

func TestCopyConcurrencyValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n  int
		ok bool
	}{{1, true}, {16, true}, {0, true}, {-1, false}} {
		c := Config{Listen: "127.0.0.1:0", MaxValueBytes: 1 << 20, CopyConcurrency: tc.n}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("copy concurrency %d: Validate = %v, want ok %v", tc.n, err, tc.ok)
		}
	}
}
