package kvtest

import (
	"path/filepath"
	"testing"

	"github.com/kvgate/kvgate/internal/cassette"
)

// RecordingsDir is the folder of recorded Fastly traffic, read in place.
func RecordingsDir(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(SharedDir(tb), "fixtures", "fastly-recorded")
}

// LoadRecording loads a recording by its name relative to RecordingsDir,
// without the .yaml extension.
func LoadRecording(tb testing.TB, name string) *cassette.Cassette {
	tb.Helper()
	c, err := cassette.Load(filepath.Join(RecordingsDir(tb), filepath.FromSlash(name)+".yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// ItemInteractions keeps a recording's interactions on the item endpoints
// of store (under /resources/stores/kv/{store}/keys), dropping store-level
// calls such as cleanup's final DELETE of the store itself.
func ItemInteractions(tb testing.TB, c *cassette.Cassette, store string) []cassette.Interaction {
	tb.Helper()
	out, err := c.UnderPath("/resources/stores/kv/" + store + "/keys")
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
