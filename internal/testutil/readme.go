package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// READMEBlock returns the fenced code block of root's README.md that
// follows the marker line `<!-- example: name ... -->`, without its fences
// and with the indentation its lines share removed (a block inside a list
// item is indented). It fails the test when there is no such block.
func READMEBlock(tb testing.TB, root, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		tb.Fatal(err)
	}
	marker := "<!-- example: " + name + " "
	_, rest, ok := strings.Cut(string(b), marker)
	if !ok {
		tb.Fatalf("README.md has no marker %q", marker)
	}
	var lines []string
	fence := ""
	for line := range strings.Lines(rest) {
		trimmed := strings.TrimSpace(line)
		switch {
		case fence == "" && strings.HasPrefix(trimmed, "```"):
			fence = strings.TrimSuffix(line, "\n")[:strings.Index(line, "```")] + "```"
		case fence != "" && strings.TrimRight(line, "\n") == fence:
			return Dedent(strings.Join(lines, ""))
		case fence != "":
			lines = append(lines, line)
		}
	}
	tb.Fatalf("README.md has no complete code block after %q", marker)
	return ""
}

// MarkedLines returns the lines of the file at path between the lines
// `<comment> README:begin name` and `<comment> README:end name`, with the
// indentation they share removed. It fails the test when the markers are
// missing or enclose nothing.
func MarkedLines(tb testing.TB, path, comment, name string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	begin, end := comment+" README:begin "+name, comment+" README:end "+name
	var lines []string
	inside, closed := false, false
	for line := range strings.Lines(string(b)) {
		switch strings.TrimSpace(line) {
		case begin:
			inside = true
		case end:
			inside, closed = false, true
		default:
			if inside {
				lines = append(lines, line)
			}
		}
	}
	if !closed || len(lines) == 0 {
		tb.Fatalf("%s has no lines between %q and %q", path, begin, end)
	}
	return Dedent(strings.Join(lines, ""))
}

// Dedent removes the leading whitespace that every non-blank line of s
// shares, and makes blank lines empty.
func Dedent(s string) string {
	prefix, first := "", true
	for line := range strings.Lines(s) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		if first {
			prefix, first = indent, false
			continue
		}
		for !strings.HasPrefix(indent, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	var out strings.Builder
	for line := range strings.Lines(s) {
		if strings.TrimSpace(line) == "" {
			out.WriteString("\n")
			continue
		}
		out.WriteString(strings.TrimPrefix(line, prefix))
	}
	return out.String()
}
