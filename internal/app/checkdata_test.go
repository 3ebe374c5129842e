package app

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/upstream/localstore"
)

// writeLocalStore writes a data directory holding a few items.
func writeLocalStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s, err := localstore.Open(localstore.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	for _, key := range []string{"a", "b", "c"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/resources/stores/kv/s1/keys/"+key, strings.NewReader("value "+key)))
		if rec.Code != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", key, rec.Code, rec.Body)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCheckData(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		dir     func(t *testing.T) string
		wantErr error  // nil when sound
		want    string // in the output
	}{
		{name: "sound", dir: writeLocalStore, want: "stores: 1\nitems: 3 "},
		{
			name: "truncated",
			dir: func(t *testing.T) string {
				dir := writeLocalStore(t)
				if err := os.Truncate(filepath.Join(dir, localstore.DataFileName), 12<<10); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			wantErr: localstore.ErrDamaged,
			want:    "problem: the file is truncated",
		},
		{
			name: "emptied",
			dir: func(t *testing.T) string {
				dir := writeLocalStore(t)
				if err := os.Truncate(filepath.Join(dir, localstore.DataFileName), 0); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			wantErr: localstore.ErrDamaged,
			want:    "problem: the file is empty",
		},
		{name: "missing", dir: func(t *testing.T) string { return t.TempDir() }, wantErr: os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			err := CheckData(&out, tc.dir(t))
			if tc.wantErr == nil && err != nil || !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckData error %v, want %v; output:\n%s", err, tc.wantErr, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out.String())
			}
			if tc.wantErr == nil && !strings.HasSuffix(out.String(), "sound\n") {
				t.Errorf("output of a sound file does not end in \"sound\":\n%s", out.String())
			}
		})
	}
}
