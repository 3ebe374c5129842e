package app

import (
	"flag"
	"io"
	"testing"
)

func TestMemoryBudgetFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     string
		args    []string
		want    int64
		wantErr bool
	}{
		{name: "default: derived from the machine", want: 0},
		{name: "environment", env: "512MiB", want: 512 << 20},
		{name: "flag over environment", env: "512MiB", args: []string{"-memory-budget", "268435456"}, want: 256 << 20},
		{name: "malformed environment", env: "lots", wantErr: true},
		{name: "malformed flag", args: []string{"-memory-budget", "1GB"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg, err := GatewayFlags(fs, func(name string) string {
				if name == "KVGATE_MEMORY_BUDGET" {
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
			if !tc.wantErr && cfg.MemoryBudget.Bytes != tc.want {
				t.Errorf("budget = %d, want %d", cfg.MemoryBudget.Bytes, tc.want)
			}
		})
	}
}

func TestMemoryBudgetValidate(t *testing.T) {
	t.Parallel()
	const maxValue = 25 << 20
	for _, tc := range []struct {
		bytes int64
		ok    bool
	}{{0, true}, {256 << 20, true}, {2 * (maxValue + 64<<10), true}, {maxValue, false}} {
		c := Config{Listen: "127.0.0.1:0", MaxValueBytes: maxValue, MemoryBudget: MemoryBudgetConfig{Bytes: tc.bytes}}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("budget %d with 25 MiB values: Validate = %v, want ok %v", tc.bytes, err, tc.ok)
		}
	}
	if b := (MemoryBudgetConfig{}).budget(maxValue); b.Size() < 256<<20 {
		t.Errorf("derived budget %d is below the floor", b.Size())
	}
}
