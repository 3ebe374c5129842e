package app

import (
	"flag"
	"io"
	"testing"

	"github.com/kvgate/kvgate/service"
)

func TestWriteFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    WriteConfig
		wantErr bool
	}{
		{name: "defaults", want: WriteConfig{DeleteConcurrency: service.DefaultDeleteConcurrency}},
		{name: "environment", env: map[string]string{"KVGATE_DELETE_CONCURRENCY": "3", "KVGATE_WRITE_BUDGET": "500"},
			want: WriteConfig{DeleteConcurrency: 3, BudgetPerHour: 500}},
		{name: "flags over environment", env: map[string]string{"KVGATE_DELETE_CONCURRENCY": "3", "KVGATE_WRITE_BUDGET": "500"},
			args: []string{"-delete-concurrency", "16", "-write-budget", "250"}, want: WriteConfig{DeleteConcurrency: 16, BudgetPerHour: 250}},
		{name: "malformed budget", env: map[string]string{"KVGATE_WRITE_BUDGET": "1000/h"}, wantErr: true},
		{name: "malformed concurrency", env: map[string]string{"KVGATE_DELETE_CONCURRENCY": "many"}, wantErr: true},
		{name: "malformed flag", args: []string{"-write-budget", "lots"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg, err := GatewayFlags(fs, func(name string) string { return tc.env[name] })
			if err == nil {
				err = fs.Parse(tc.args)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && cfg.Writes != tc.want {
				t.Errorf("writes = %+v, want %+v", cfg.Writes, tc.want)
			}
		})
	}
}

func TestWriteConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		writes WriteConfig
		ok     bool
	}{
		{WriteConfig{}, true},
		{WriteConfig{DeleteConcurrency: 100, BudgetPerHour: 1000}, true},
		{WriteConfig{DeleteConcurrency: -1}, false},
		{WriteConfig{BudgetPerHour: -1}, false},
	} {
		c := Config{Listen: "127.0.0.1:0", MaxValueBytes: 1 << 20, Writes: tc.writes}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok %v", tc.writes, err, tc.ok)
		}
	}
}
