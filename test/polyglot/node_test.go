package polyglot_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kvgate/kvgate/internal/kvtest"
)

// TestNodeClient runs client.test.mjs with Node's test runner against the
// real stack: a put, a get, a client-streamed upload and a streamed
// listing, over HTTP/2 with the Connect protocol and with gRPC.
func TestNodeClient(t *testing.T) {
	t.Parallel()
	root := kvtest.RepoRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		node = "node" // requireFiles reports it missing
	}
	requireFiles(t, "the Node test needs node and node_modules", node,
		filepath.Join(root, "node_modules", "@connectrpc", "connect-node", "package.json"),
		filepath.Join(root, "node_modules", "@kvgate", "client", "package.json"))
	st := kvtest.Start(t, kvtest.Options{})
	run(t, root, []string{"KVGATE_URL=" + st.URL}, node, "--test", filepath.Join("test", "polyglot", "client.test.mjs"))
}
