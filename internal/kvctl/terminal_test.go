package kvctl_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/kvtest"
)

// buildKvctl builds the kvctl binary into a temporary directory.
func buildKvctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kvctl")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/kvctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// onTerminal runs the command line under util-linux script, which gives it
// a pseudo-terminal as stdin, stdout and stderr, and types input into it.
// It returns everything the terminal showed.
func onTerminal(t *testing.T, env []string, input, cmdline string) (string, error) {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("script (util-linux) is missing")
		}
		t.Skip("script (util-linux) is missing")
	}
	cmd := exec.Command(script, "-qec", cmdline, "/dev/null")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTerminal checks what only a terminal sees: rm --prefix asks before
// deleting and 'n' deletes nothing; import draws a progress bar on a
// terminal and only its summary line otherwise.
func TestTerminal(t *testing.T) {
	t.Parallel()
	bin := buildKvctl(t)
	st := kvtest.Start(t, kvtest.Options{})
	env := []string{"KVCTL_ADDR=" + st.URL, "KVCTL_STORE=term"}
	for _, k := range []string{"logs/a", "logs/b", "keep"} {
		mustRun(t, st.URL, "v", "put", "-s", "term", k)
	}
	ls := func() string { return mustRun(t, st.URL, "", "ls", "-s", "term").stdout }

	t.Run("rm prefix answered n", func(t *testing.T) {
		out, err := onTerminal(t, env, "n\n", bin+" rm --prefix logs/")
		if !strings.Contains(out, `Delete every key under "logs/" in store term? [y/N]`) || !strings.Contains(out, "nothing deleted") {
			t.Fatalf("terminal showed %q (%v)", out, err)
		}
		if got := ls(); got != "keep\nlogs/a\nlogs/b\n" {
			t.Fatalf("after n, ls = %q", got)
		}
	})
	t.Run("rm prefix answered y", func(t *testing.T) {
		out, err := onTerminal(t, env, "y\n", bin+" rm --prefix logs/")
		if err != nil || !strings.Contains(out, "[y/N]") {
			t.Fatalf("terminal showed %q (%v)", out, err)
		}
		if got := ls(); got != "keep\n" {
			t.Fatalf("after y, ls = %q", got)
		}
	})

	dir := t.TempDir()
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("k%02d", i)), bytes.Repeat([]byte("x"), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("import progress on a terminal", func(t *testing.T) {
		out, err := onTerminal(t, env, "", bin+" import -s imported "+dir)
		if err != nil || !strings.Contains(out, "\rimporting ") || !strings.Contains(out, "%") {
			t.Fatalf("terminal showed %q (%v)", out, err)
		}
	})
	t.Run("import quiet off a terminal", func(t *testing.T) {
		cmd := exec.Command(bin, "import", "-s", "piped", dir)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		// Only the summary line: no bar, no carriage returns.
		if err := cmd.Run(); err != nil || stderr.String() != "imported 20 items\n" {
			t.Fatalf("import: %v, stderr %q", err, stderr.String())
		}
		if got := mustRun(t, st.URL, "", "ls", "-s", "piped").stdout; strings.Count(got, "\n") != 20 {
			t.Fatalf("ls piped = %q", got)
		}
	})
}
