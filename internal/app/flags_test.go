package app

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

func TestFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		want    func(*Config) bool
		wantErr bool
	}{
		{
			name: "defaults",
			want: func(c *Config) bool {
				return c.Listen == "127.0.0.1:8080" && c.DataDir == "./data" && c.FastlyToken == "" &&
					c.FastlyURL == upstream.DefaultBaseURL && c.MaxValueBytes == upstream.DefaultMaxValueBytes
			},
		},
		{
			name: "environment",
			env: map[string]string{
				"FASTLY_API_TOKEN": "tok", "FASTLY_API_URL": "http://x", "KVGATE_LISTEN": ":9",
				"KVGATE_DATA": "/d", "KVGATE_MAX_VALUE_BYTES": "1024", "KVGATE_SHUTDOWN_TIMEOUT": "3s",
			},
			want: func(c *Config) bool {
				return c.FastlyToken == "tok" && c.FastlyURL == "http://x" && c.Listen == ":9" && c.DataDir == "/d" &&
					c.MaxValueBytes == 1024 && c.Server.ShutdownTimeout == 3*time.Second
			},
		},
		{
			name: "flags override the environment",
			env:  map[string]string{"KVGATE_LISTEN": ":9", "KVGATE_DATA": "/d"},
			args: []string{"-listen", ":10", "-data", ""},
			want: func(c *Config) bool { return c.Listen == ":10" && c.DataDir == "" },
		},
		{
			name: "store faults",
			env:  map[string]string{"KVGATE_STORE_FAULTS": "429=0.1,seed=3", "KVGATE_STORE_LATENCY": "20ms"},
			args: []string{"-store-faults", "latency=5ms,503=0.2"},
			want: func(c *Config) bool {
				return c.StoreFaults.Latency == 5*time.Millisecond && c.StoreFaults.Unavailable == 0.2
			},
		},
		{name: "malformed store faults", env: map[string]string{"KVGATE_STORE_FAULTS": "429=2"}, wantErr: true},
		{name: "malformed size", env: map[string]string{"KVGATE_MAX_VALUE_BYTES": "25MiB"}, wantErr: true},
		{name: "malformed duration", env: map[string]string{"KVGATE_SHUTDOWN_TIMEOUT": "10"}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg, _, err := Flags(fs, func(k string) string { return tc.env[k] })
			if (err != nil) != tc.wantErr {
				t.Fatalf("Flags error = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if !tc.want(cfg) {
				t.Errorf("config = %+v", cfg)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, size := range []int64{0, -1, upstream.MaxValueBytesLimit + 1} {
		c := Config{Listen: ":0", MaxValueBytes: size}
		if c.Validate() == nil {
			t.Errorf("max value size %d accepted", size)
		}
	}
	if c := (Config{Listen: ":0", MaxValueBytes: upstream.MaxValueBytesLimit}); c.Validate() != nil {
		t.Errorf("Fastly's largest value size refused: %v", c.Validate())
	}
}
