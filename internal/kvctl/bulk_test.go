package kvctl_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/kvctl"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// seed writes keys into store straight to the local store, past kvgate
// (and its write budget).
func seed(t *testing.T, st *kvtest.Stack, store string, keys []string) {
	t.Helper()
	direct, err := upstream.NewClient(upstream.ClientConfig{BaseURL: st.UpstreamURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := direct.PutItem(t.Context(), store, k, []byte("v:"+k), upstream.PutOptions{Metadata: "m:" + k}); err != nil {
			t.Fatal(err)
		}
	}
}

func keysOf(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return keys
}

// listed is what ls prints for store, as keys.
func listed(t *testing.T, st *kvtest.Stack, store string) []string {
	t.Helper()
	return lines(mustRun(t, st.URL, "", "ls", "-s", store).stdout)
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// TestRmDeleteKeys deletes a prefix and lists of keys through DeleteKeys:
// the keys deleted (or that would be) on stdout, the counts on stderr, no
// DELETE on a dry run, and exit 3 for a missing key of a list without
// --force.
func TestRmDeleteKeys(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		args      []string // after rm -s STORE
		code      int
		stdout    []string // sorted
		stderr    string
		deletes   int64
		remaining int
	}{
		{"prefix dry run", []string{"--prefix", "a/", "--dry-run"}, kvctl.ExitOK, keysOf("a/", 5), "would delete 5 keys", 0, 10},
		{"prefix", []string{"--prefix", "a/"}, kvctl.ExitOK, keysOf("a/", 5), "deleted 5 keys", 5, 5},
		{"list dry run", []string{"b/00", "b/01", "nope", "--dry-run"}, kvctl.ExitOK, []string{"b/00", "b/01"}, "would delete 2 keys, 1 already gone", 0, 10},
		{"list with a missing key", []string{"b/00", "nope", "b/01"}, kvctl.ExitNotFound, []string{"b/00", "b/01"}, "deleted 2 keys, 1 already gone", 3, 8},
		{"list --force", []string{"b/02", "nope", "--force"}, kvctl.ExitOK, []string{"b/02"}, "deleted 1 keys, 1 already gone", 2, 9},
		{"all", []string{"--all", "--yes"}, kvctl.ExitOK, append(keysOf("a/", 5), keysOf("b/", 5)...), "deleted 10 keys", 10, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A stack of its own: the DELETEs it counts are this case's.
			st := kvtest.Start(t, kvtest.Options{})
			store := "rm-" + strings.ReplaceAll(tc.name, " ", "-")
			seed(t, st, store, append(keysOf("a/", 5), keysOf("b/", 5)...))
			before := st.Store.Count(localstore.RequestDelete)
			got := kvctlAt(t, st.URL, "", append([]string{"rm", "-s", store}, tc.args...)...)
			out := lines(got.stdout)
			slices.Sort(out)
			if got.code != tc.code || !slices.Equal(out, tc.stdout) || !strings.Contains(got.stderr, tc.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q", got.code, out, got.stderr, tc.code, tc.stdout, tc.stderr)
			}
			if d := st.Store.Count(localstore.RequestDelete) - before; d != tc.deletes {
				t.Errorf("%d DELETEs reached the store; want %d", d, tc.deletes)
			}
			if n := len(listed(t, st, store)); n != tc.remaining {
				t.Errorf("%d keys left; want %d", n, tc.remaining)
			}
		})
	}
}

// TestRmResumes deletes while the store fails DELETEs now and then with
// 503 or 429 (and kvgate does not retry): each failure ends a DeleteKeys
// call early, and rm resumes from its cursor until every key is gone,
// printing each key once and no failure.
func TestRmResumes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		faults localstore.Faults
	}{
		{"unavailable", localstore.Faults{Unavailable: 0.15, Seed: 7}},
		{"rate limited with a retry delay", localstore.Faults{RateLimited: 0.05, Seed: 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{
				Writes: app.WriteConfig{DeleteConcurrency: 1},
				Retry:  upstream.RetryPolicy{MaxAttempts: 1},
			})
			keys := keysOf("r/", 40)
			seed(t, st, "resume", keys)
			f := tc.faults
			f.Kinds = localstore.KindsOf(localstore.RequestDelete)
			st.Store.SetFaults(f)
			got := kvctlAt(t, st.URL, "", "rm", "-s", "resume", "--prefix", "r/", "--retries", "20", "--json")
			st.Store.SetFaults(localstore.Faults{})
			if got.code != kvctl.ExitOK {
				t.Fatalf("rm: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
			}
			if !strings.Contains(got.stderr, "resuming in") {
				t.Errorf("stderr %q; want a resume (the faults ended no call early?)", got.stderr)
			}
			var sum struct {
				Deleted  int   `json:"deleted"`
				NotFound int   `json:"not_found"`
				Failures []any `json:"failures"`
			}
			if err := json.Unmarshal([]byte(got.stdout), &sum); err != nil || sum.Deleted+sum.NotFound != len(keys) || len(sum.Failures) != 0 {
				t.Errorf("summary %q (%v); want %d deleted, no failures", got.stdout, err, len(keys))
			}
			if left := listed(t, st, "resume"); len(left) != 0 {
				t.Errorf("keys left: %q", left)
			}
		})
	}
}

var cursorLine = regexp.MustCompile(`to resume: kvctl (.*) --cursor '?([^'\n]*)'?\n`)

// TestRmStopsWithCursor spends kvgate's own write budget: the retry delay
// is longer than --max-wait, so rm stops, printing the cursor; another
// kvgate on the same store finishes the deletion from that cursor.
func TestRmStopsWithCursor(t *testing.T) {
	t.Parallel()
	const budget = 7
	st := kvtest.Start(t, kvtest.Options{Writes: app.WriteConfig{DeleteConcurrency: 2, BudgetPerHour: budget}})
	keys := keysOf("c/", 20)
	seed(t, st, "stop", keys)
	got := kvctlAt(t, st.URL, "", "rm", "-s", "stop", "--prefix", "c/", "--max-wait", "1s")
	m := cursorLine.FindStringSubmatch(got.stderr)
	if got.code != kvctl.ExitFailure || m == nil || m[2] == "" || !strings.Contains(got.stderr, "resource_exhausted") {
		t.Fatalf("rm past the budget: exit %d, stderr %q; want exit 1 and the cursor", got.code, got.stderr)
	}
	if m[1] != "rm -s stop --prefix c/" {
		t.Errorf("resume command %q", m[1])
	}
	if n := len(lines(got.stdout)); n != budget {
		t.Errorf("printed %d keys deleted; want %d", n, budget)
	}
	asJSON := kvctlAt(t, st.URL, "", "rm", "-s", "stop", "--prefix", "c/", "--max-wait", "1s", "--cursor", m[2], "--json")
	var e struct{ Error struct{ Code, Cursor string } }
	if err := json.Unmarshal([]byte(asJSON.stdout), &e); err != nil || e.Error.Code != "resource_exhausted" || e.Error.Cursor != m[2] {
		t.Errorf("--json failure %q (%v); want the code and the same cursor", asJSON.stdout, err)
	}

	other := kvtest.Start(t, kvtest.Options{Upstream: st.Store.Handler()})
	rest := kvctlAt(t, other.URL, "", "rm", "-s", "stop", "--prefix", "c/", "--cursor", m[2])
	if rest.code != kvctl.ExitOK || len(lines(rest.stdout)) != len(keys)-budget {
		t.Fatalf("resumed rm: exit %d, stdout %q, stderr %q", rest.code, rest.stdout, rest.stderr)
	}
	if left := listed(t, st, "stop"); len(left) != 0 {
		t.Errorf("keys left: %q", left)
	}
}

// TestCp copies a prefix into another store, with values and metadata,
// and resumes a copy whose reads are rate limited now and then.
func TestCp(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{Retry: upstream.RetryPolicy{MaxAttempts: 1}})
	keys := keysOf("p/", 30)
	seed(t, st, "src", append(keys, "q/other"))
	got := kvctlAt(t, st.URL, "", "cp", "-s", "src", "--to", "dst", "--prefix", "p/", "--json")
	if got.code != kvctl.ExitOK || !jsonMatches(t, got.stdout, `{"copied":30,"skipped":0,"failed":0,"failures":[]}`) {
		t.Fatalf("cp: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}
	if !slices.Equal(listed(t, st, "dst"), keys) {
		t.Errorf("dst holds %q", listed(t, st, "dst"))
	}
	if meta := mustRun(t, st.URL, "", "get", "-s", "dst", "--meta", "p/07").stdout; !strings.Contains(meta, "metadata: m:p/07\n") {
		t.Errorf("copied metadata: %q", meta)
	}
	for _, args := range [][]string{{"cp", "-s", "src"}, {"cp", "-s", "src", "--to", "src"}} {
		if got := kvctlAt(t, st.URL, "", args...); got.code != kvctl.ExitUsage {
			t.Errorf("kvctl %s: exit %d; want usage", strings.Join(args, " "), got.code)
		}
	}

	st.Store.SetFaults(localstore.Faults{RateLimited: 0.05, Seed: 11, Kinds: localstore.KindsOf(localstore.RequestGet)})
	got = kvctlAt(t, st.URL, "", "cp", "-s", "src", "--to", "dst2", "--retries", "20")
	st.Store.SetFaults(localstore.Faults{})
	if got.code != kvctl.ExitOK || !strings.Contains(got.stderr, "resuming in") {
		t.Fatalf("cp under rate limits: exit %d, stderr %q; want success after a resume", got.code, got.stderr)
	}
	if want := append(slices.Clone(keys), "q/other"); !slices.Equal(listed(t, st, "dst2"), want) {
		t.Errorf("dst2 holds %q; want %q", listed(t, st, "dst2"), want)
	}
}

// TestGetMany reads several keys with one GetItems call: one line per key
// in the order given, absent keys marked, exit 3 when any is absent.
func TestGetMany(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	seed(t, st, "many", []string{"a", "b"})
	cases := []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"b", "a"}, kvctl.ExitOK, "b\t\"v:b\"\na\t\"v:a\"\n"},
		{[]string{"a", "zz", "b"}, kvctl.ExitNotFound, "a\t\"v:a\"\nzz\t-\nb\t\"v:b\"\n"},
		{[]string{"--meta", "a", "zz"}, kvctl.ExitNotFound, "a\t3\t*\t\"m:a\"\nzz\t-\n"},
		{[]string{"--json", "a", "zz"}, kvctl.ExitNotFound, `{"key":"a","value":"djph","size":3,"metadata":"m:a","generation":"*","last_modified":"*"}` + "\n" + `{"key":"zz","absent":true}` + "\n" + `{"error":{"code":"not_found","exit":3,"message":"*"}}` + "\n"},
	}
	for _, tc := range cases {
		got := kvctlAt(t, st.URL, "", append([]string{"get", "-s", "many"}, tc.args...)...)
		if got.code != tc.code {
			t.Errorf("get %q: exit %d, stderr %q; want %d", tc.args, got.code, got.stderr, tc.code)
			continue
		}
		gotLines, wantLines := lines(got.stdout), lines(tc.stdout)
		if len(gotLines) != len(wantLines) {
			t.Errorf("get %q: stdout %q; want %q", tc.args, got.stdout, tc.stdout)
			continue
		}
		for i, w := range wantLines {
			g := gotLines[i]
			ok := g == w
			switch {
			case strings.HasPrefix(w, "{"):
				ok = jsonMatches(t, g, w)
			case strings.Contains(w, "*"):
				ok = regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(w), `\*`, `[0-9]+`) + "$").MatchString(g)
			}
			if !ok {
				t.Errorf("get %q line %d: %q; want %q", tc.args, i, g, w)
			}
		}
	}
	if got := kvctlAt(t, st.URL, "", "get", "-s", "many", "-o", t.TempDir()+"/x", "a", "b"); got.code != kvctl.ExitUsage {
		t.Errorf("get -o with two keys: exit %d; want usage", got.code)
	}
}
