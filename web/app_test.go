package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
)

// longListKeys is how many keys the long-list step scrolls through.
const longListKeys = 100_000

// driverLine is one line the driver prints: a step done, or the step
// that failed with its screenshot.
type driverLine struct {
	Step       string `json:"step"`
	Failed     string `json:"failed"`
	Error      string `json:"error"`
	Screenshot string `json:"screenshot"`
	LoadTime   *struct {
		DOMContentLoadedMs float64 `json:"domContentLoadedMs"`
		LoadMs             float64 `json:"loadMs"`
		TransferBytes      int     `json:"transferBytes"`
	} `json:"loadTime"`
}

// TestBrowserApp drives the app in Chromium through what a person does
// with it (web/e2e/drive.mjs), against kvgate on the local store, and
// makes the other writer's change itself between two steps.
func TestBrowserApp(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	st := kvtest.Start(t, kvtest.Options{WebApp: true})
	c := st.NewClient(http.DefaultClient)
	const store = "web-app"
	if _, err := c.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: store, Key: "other/seeded", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	lastKey := seedLongList(t, st.Client, store)

	d.run(t, st.URL+"/", store, []string{"LAST_KEY=" + lastKey, fmt.Sprintf("LONG_LIST_KEYS=%d", longListKeys)}, func() error {
		_, err := c.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: store, Key: "greet/hello", Value: []byte("from another writer")})
		return err
	})

	// What the page did is in the store.
	_, err := c.GetItem(t.Context(), &kvv1.GetItemRequest{StoreId: store, Key: "greet/hello"})
	testutil.WantCode(t, "reading the deleted item", err, connect.CodeNotFound)
	for key, want := range map[string]string{"greet/a.txt": "file a", "greet/b.bin": "\x00\xff\x01",
		"greet/c.txt": "dropped c", "greet/d.bin": "\a\b\t"} {
		res, err := c.GetItem(t.Context(), &kvv1.GetItemRequest{StoreId: store, Key: key})
		if err != nil || string(res.GetItem().GetValue()) != want {
			t.Errorf("uploaded %s: %q, %v; want %q", key, res.GetItem().GetValue(), err, want)
		}
	}

	// With the keyboard alone, on a fresh page: open the store, open an
	// item from the key list, edit its value and save it.
	const kbdStore, kbdKey = "web-app-keyboard", "notes/kbd"
	if _, err := c.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: kbdStore, Key: kbdKey, Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	d.run(t, st.URL+"/", kbdStore, []string{"DRIVE=keyboard", "KEY=" + kbdKey}, func() error { return nil })
	res, err := c.GetItem(t.Context(), &kvv1.GetItemRequest{StoreId: kbdStore, Key: kbdKey})
	if err != nil || string(res.GetItem().GetValue()) != "typed without a mouse" {
		t.Errorf("%s after the keyboard-only edit: %q, %v", kbdKey, res.GetItem().GetValue(), err)
	}
}

// driver runs web/e2e/drive.mjs in Chromium.
type driver struct{ root, chromium, shots string }

// newDriver finds Chromium and playwright-core, skipping the test without
// them outside CI. Screenshots of a failing step go to
// $KVGATE_WEB_ARTIFACTS, or the test's artifact directory (kept with go
// test -artifacts).
func newDriver(t *testing.T) driver {
	t.Helper()
	root := kvtest.RepoRoot(t)
	d := driver{root: root, shots: os.Getenv("KVGATE_WEB_ARTIFACTS")}
	d.chromium = testutil.RequireBrowser(t, root, filepath.Join("playwright-core", "package.json"))
	if d.shots == "" {
		d.shots = t.ArtifactDir()
	}
	return d
}

// run drives the app at url on store with env added to the driver's, makes
// otherWriter's change when the driver waits for it, fails the test on a
// failed step, and returns the steps done.
func (d driver) run(t *testing.T, url, store string, env []string, otherWriter func() error) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("web", "e2e", "drive.mjs"), url, store)
	cmd.Dir = d.root
	cmd.Env = append(append(os.Environ(), "CHROMIUM="+d.chromium, "SCREENSHOTS="+d.shots), env...)
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done, failure := followDriver(t, stdout, stdin, otherWriter)
	waitErr := cmd.Wait()
	if stderr.Len() > 0 {
		t.Logf("driver stderr:\n%s", stderr.Bytes())
	}
	if failure != nil {
		t.Fatalf("step %q failed: %s\nscreenshot: %s", failure.Failed, failure.Error, failure.Screenshot)
	}
	if waitErr != nil {
		t.Fatalf("driver: %v after steps %q", waitErr, done)
	}
	t.Logf("steps done: %q", done)
	return done
}

// followDriver reads the driver's lines until it ends, making the other
// writer's change when the driver waits for it, and returns the steps
// done and the failure the driver reported, if any.
func followDriver(t *testing.T, stdout io.Reader, stdin io.WriteCloser, otherWriter func() error) ([]string, *driverLine) {
	t.Helper()
	defer stdin.Close()
	var done []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var line driverLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("driver printed %q: %v", sc.Bytes(), err)
			continue
		}
		if line.Failed != "" {
			return done, &line
		}
		if lt := line.LoadTime; lt != nil {
			// Measured for the record; machines differ too much to assert.
			t.Logf("page load: DOMContentLoaded after %.0f ms, load after %.0f ms (the document %d bytes on the wire)",
				lt.DOMContentLoadedMs, lt.LoadMs, lt.TransferBytes)
			continue
		}
		done = append(done, line.Step)
		if line.Step == "wait-other-writer" {
			if err := otherWriter(); err != nil {
				t.Errorf("the other writer's change: %v", err)
				return done, nil
			}
			if _, err := fmt.Fprintln(stdin, "written"); err != nil {
				t.Errorf("telling the driver: %v", err)
			}
		}
	}
	return done, nil
}

// seedLongList writes longListKeys keys under many/ straight into the
// store kvgate serves (batch PUTs of 1,000 NDJSON lines, several in
// flight) and returns the last in order.
func seedLongList(t *testing.T, up *upstream.Client, store string) string {
	t.Helper()
	const perBatch = 1000
	g, ctx := errgroup.WithContext(t.Context())
	g.SetLimit(4)
	for start := 0; start < longListKeys; start += perBatch {
		g.Go(func() error {
			var body []byte
			for i := start; i < start+perBatch; i++ {
				body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: longListKey(i), Value: []byte("v")})
			}
			res, err := up.PutBatch(ctx, store, body)
			if err == nil && len(res.LineErrors) > 0 {
				err = fmt.Errorf("%d lines refused, first: %+v", len(res.LineErrors), res.LineErrors[0])
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("seeding %d keys: %v", longListKeys, err)
	}
	return longListKey(longListKeys - 1)
}

// longListKey is the i-th key of the long list; keys sort as numbered.
func longListKey(i int) string { return fmt.Sprintf("many/%06d", i) }
