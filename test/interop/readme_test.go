//go:build unix

package interop

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/testutil"
)

// readmeCommand is one shell command of the README's "Try it" block and
// the output its "#   " lines show.
type readmeCommand struct {
	line int // 1-based, within the block
	cmd  string
	want []string
}

// parseTryIt splits a shell block into commands (a line ending in a
// backslash continues on the next) and their expected output: the lines
// starting "#   " after a command. Other comment lines describe what
// follows and are not compared.
func parseTryIt(block string) []readmeCommand {
	var cmds []readmeCommand
	continued := false
	for i, line := range strings.Split(block, "\n") {
		switch {
		case continued:
			c := &cmds[len(cmds)-1]
			c.cmd += "\n" + line
			continued = strings.HasSuffix(line, `\`)
		case strings.HasPrefix(line, "#   ") && len(cmds) > 0:
			c := &cmds[len(cmds)-1]
			c.want = append(c.want, strings.TrimPrefix(line, "#   "))
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
		default:
			cmds = append(cmds, readmeCommand{line: i + 1, cmd: line})
			continued = strings.HasSuffix(line, `\`)
		}
	}
	return cmds
}

// TestREADMETryIt runs the README's "Try it" commands, in order, against
// a real kvgate with an in-memory local store, and compares what each
// prints with the output the README shows under it. grpcurl, buf and
// curl are the real tools: grpcurl and buf the copies `make deps` builds.
func TestREADMETryIt(t *testing.T) {
	t.Parallel()
	tools := toolDir(t)
	block := testutil.READMEBlock(t, repoRoot, "try-it")
	cmds := parseTryIt(block)
	if len(cmds) == 0 {
		t.Fatalf("README.md's try-it block has no commands:\n%s", block)
	}
	ctx := testContext(t)
	kv := startKVGate(t, "")
	for _, c := range cmds {
		if len(c.want) == 0 {
			t.Errorf("README try-it line %d shows no output (#   lines) to check:\n%s", c.line, c.cmd)
			continue
		}
		script := strings.ReplaceAll(c.cmd, "127.0.0.1:8080", kv.Addr)
		cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "PATH="+tools+string(os.PathListSeparator)+os.Getenv("PATH"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		// Only standard output is compared: curl reports progress on
		// standard error.
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("README try-it line %d failed: %v\n$ %s\n%s%s", c.line, err, script, out, stderr.String())
		}
		if msg := compareOutput(string(out), strings.Join(c.want, "\n")); msg != "" {
			t.Errorf("README try-it line %d: %s\n$ %s\ngot:\n%s%s\nREADME shows:\n%s",
				c.line, msg, script, out, stderr.String(), strings.Join(c.want, "\n"))
		}
	}
}

// toolDir returns a folder holding grpcurl and buf (links to the built
// tools), to put first on the commands' PATH. curl comes from the system.
// Without a tool the test skips on a workstation and fails under CI.
func toolDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	buf := os.Getenv("KVGATE_BUF")
	if buf == "" {
		buf = filepath.Join(repoRoot, "bin", "buf")
	}
	missing := ""
	if _, err := os.Stat(buf); err != nil {
		missing = "buf not found at " + buf + " (build it with `cd tools && go build -o ../bin/ tool`, or set KVGATE_BUF)"
	} else if _, err := exec.LookPath("curl"); err != nil {
		missing = "curl not found on PATH"
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(missing)
		}
		t.Skip(missing)
	}
	for name, path := range map[string]string{"grpcurl": grpcurlPath(t), "buf": buf} {
		abs, err := filepath.Abs(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// varying names the JSON fields whose values differ from run to run: the
// README shows an example value, the command must print some value.
var varying = map[string]bool{"generation": true, "lastModified": true}

// compareOutput compares a command's output with the README's. When the
// README shows JSON, both are compared as JSON values (so layout does not
// matter) with varying fields only required to be non-empty; otherwise
// line by line, ignoring trailing spaces. It returns "" when they match.
func compareOutput(got, want string) string {
	if json.Valid([]byte(want)) {
		var g, w any
		if err := json.Unmarshal([]byte(got), &g); err != nil {
			return "output is not the JSON the README shows: " + err.Error()
		}
		_ = json.Unmarshal([]byte(want), &w)
		if !reflect.DeepEqual(maskVarying(g), maskVarying(w)) {
			return "output differs from the README's JSON"
		}
		return ""
	}
	trim := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		for i, l := range lines {
			lines[i] = strings.TrimSpace(l)
		}
		return strings.Join(lines, "\n")
	}
	if trim(got) != trim(want) {
		return "output differs from the README's"
	}
	return ""
}

// maskVarying replaces the non-empty string values of varying fields, at
// any depth, with a placeholder.
func maskVarying(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && varying[k] && s != "" {
				v[k] = "(varies)"
			} else {
				v[k] = maskVarying(x)
			}
		}
	case []any:
		for i, x := range v {
			v[i] = maskVarying(x)
		}
	}
	return v
}

func TestCompareOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, got, want string
		ok              bool
	}{
		{"json layout", "{\n  \"keys\": [\n    \"a\"\n  ]\n}\n", `{"keys":["a"]}`, true},
		{"json varying", `{"item":{"generation":"7","lastModified":"x"}}`, `{"item":{"generation":"1","lastModified":"y"}}`, true},
		{"json varying missing", `{"item":{}}`, `{"item":{"generation":"1"}}`, false},
		{"json differs", `{"keys":["b"]}`, `{"keys":["a"]}`, false},
		{"not json", "oops", `{}`, false},
		{"lines", "a\nb  \n", "a\nb", true},
		{"lines differ", "a\nc\n", "a\nb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if msg := compareOutput(tt.got, tt.want); (msg == "") != tt.ok {
				t.Errorf("compareOutput(%q, %q) = %q, want match %v", tt.got, tt.want, msg, tt.ok)
			}
		})
	}
}

func TestParseTryIt(t *testing.T) {
	t.Parallel()
	block := "# heading:\na \\\n  b\n#   out1\n#   out2\n# next:\nc\n"
	got := parseTryIt(block)
	want := []readmeCommand{
		{line: 2, cmd: "a \\\n  b", want: []string{"out1", "out2"}},
		{line: 7, cmd: "c"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseTryIt = %#v, want %#v", got, want)
	}
}
