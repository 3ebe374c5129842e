package kvctl_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/kvctl"
	"github.com/kvgate/kvgate/internal/kvtest"
)

func mustRun(t *testing.T, addr, stdin string, args ...string) result {
	t.Helper()
	got := kvctlAt(t, addr, stdin, args...)
	if got.code != kvctl.ExitOK {
		t.Fatalf("kvctl %s: exit %d, stderr %q", strings.Join(args, " "), got.code, got.stderr)
	}
	return got
}

func TestExportImportCopiesAStore(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	for i := range 30 {
		mustRun(t, st.URL, fmt.Sprintf("value %d\n\x00\xff", i), "put", "-s", "A", "--metadata", fmt.Sprintf(`{"n":%d}`, i), fmt.Sprintf("k/%02d", i))
	}
	exported := mustRun(t, st.URL, "", "export", "-s", "A", "--concurrency", "3").stdout
	if n := strings.Count(exported, "\n"); n != 30 {
		t.Fatalf("export wrote %d lines", n)
	}
	mustRun(t, st.URL, exported, "import", "-s", "B")
	again := mustRun(t, st.URL, "", "export", "-s", "B").stdout
	if again != exported {
		t.Fatalf("store B differs from A:\n%s\nvs\n%s", again, exported)
	}
	if !strings.HasPrefix(exported, `{"key":"k/00","value":"dmFsdWUgMAoA/w==","metadata":"{\"n\":0}"}`) {
		t.Fatalf("first line %q", strings.SplitN(exported, "\n", 2)[0])
	}

	// Prefix delete: the dry run lists and keeps; the real one deletes.
	dry := mustRun(t, st.URL, "", "rm", "-s", "B", "--prefix", "k/1", "--dry-run").stdout
	if n := strings.Count(dry, "\n"); n != 10 || !strings.HasPrefix(dry, "k/10\n") {
		t.Fatalf("dry run listed %q", dry)
	}
	if n := strings.Count(mustRun(t, st.URL, "", "ls", "-s", "B").stdout, "\n"); n != 30 {
		t.Fatalf("dry run deleted: %d keys left", n)
	}
	mustRun(t, st.URL, "", "rm", "-s", "B", "--prefix", "k/1")
	left := mustRun(t, st.URL, "", "ls", "-s", "B").stdout
	if strings.Count(left, "\n") != 20 || strings.Contains(left, "k/1") {
		t.Fatalf("after prefix delete: %q", left)
	}
	if got := kvctlAt(t, st.URL, "", "rm", "-s", "B", "--prefix", ""); got.code != kvctl.ExitUsage {
		t.Fatalf("empty prefix without --all: exit %d", got.code)
	}
}

func TestImportSourcesAndPartialFailure(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for name, body := range map[string]string{"index.html": "<h1>", "css/site.css": "body{}"} {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, st.URL, "", "import", "-s", "dir", tree)
	if got := mustRun(t, st.URL, "", "get", "-s", "dir", "css/site.css").stdout; got != "body{}" {
		t.Fatalf("directory import: %q", got)
	}

	viceroy := filepath.Join(dir, "kv.json")
	if err := os.WriteFile(filepath.Join(dir, "blob.bin"), []byte("from a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(viceroy, []byte(`{"plain":"data","rich":{"data":"d","metadata":"md"},"filed":{"file":"blob.bin"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, st.URL, "", "import", "-s", "vic", "--format", "viceroy", viceroy)
	for key, want := range map[string]string{"plain": "data", "rich": "d", "filed": "from a file"} {
		if got := mustRun(t, st.URL, "", "get", "-s", "vic", key).stdout; got != want {
			t.Errorf("viceroy %s: %q", key, got)
		}
	}
	if got := mustRun(t, st.URL, "", "get", "-s", "vic", "--meta", "rich").stdout; !strings.Contains(got, "metadata: md\n") {
		t.Errorf("viceroy metadata: %q", got)
	}

	// A bad line and a key kvgate refuses fail on their own; the rest is
	// written, and the exit code says partial failure.
	in := `{"key":"ok","value":"aGk=","time_to_live_sec":3600}` + "\nnot json\n" + `{"key":"bad#key","value":""}` + "\n"
	got := kvctlAt(t, st.URL, in, "import", "-s", "part")
	if got.code != kvctl.ExitPartial || !strings.Contains(got.stderr, "line 2") || !strings.Contains(got.stderr, `"bad#key"`) {
		t.Fatalf("partial import: exit %d stderr %q", got.code, got.stderr)
	}
	if v := mustRun(t, st.URL, "", "get", "-s", "part", "ok").stdout; v != "hi" {
		t.Fatalf("partial import wrote %q", v)
	}
}

// TestBinaryPipe builds kvctl and copies a store through a shell pipe,
// then runs the README's kvctl examples.
func TestBinaryPipe(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	bin := filepath.Join(t.TempDir(), "kvctl")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kvctl")
	build.Dir = kvtest.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	work := t.TempDir()
	sh := func(script string) string {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "KVCTL_ADDR="+st.URL, "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return string(out)
	}
	for _, line := range readmeExamples(t) {
		sh(line)
	}
	sh("kvctl put -s src a 1 && kvctl put -s src b 2 && kvctl export -s src | kvctl import -s dst")
	if got := sh("kvctl ls -s dst"); got != "a\nb\n" {
		t.Fatalf("piped copy: %q", got)
	}
	if got := sh("kvctl completion bash | head -c 200"); !strings.Contains(got, "kvctl") {
		t.Fatalf("completion: %q", got)
	}
}

// readmeExamples returns the command lines of the README's kvctl example
// block: the lines starting with "kvctl " or holding " | kvctl".
func readmeExamples(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(kvtest.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "<!-- kvctl examples: run by internal/kvctl TestBinaryPipe -->":
			in = true
		case in && strings.HasPrefix(l, "## "):
			in = false
		case in && (strings.HasPrefix(l, "kvctl ") || strings.HasPrefix(l, "echo ")):
			lines = append(lines, l)
		}
	}
	if len(lines) < 5 {
		t.Fatalf("README kvctl examples: found %d lines", len(lines))
	}
	return lines
}
