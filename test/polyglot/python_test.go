package polyglot_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/kvtest"
)

// Debian's Python and its packages: python3 on PATH may be another Python
// without grpcio.
const (
	python           = "/usr/bin/python3"
	protoc           = "/usr/bin/protoc"
	grpcPythonPlugin = "/usr/bin/grpc_python_plugin"
	pythonPackages   = "/usr/lib/python3/dist-packages"
)

// protocPython generates a Python service's stubs from proto/ into
// kvgate_stubs: the README's command, word for word.
const protocPython = "protoc -I proto -I /usr/include" +
	" --python_out=kvgate_stubs --grpc_python_out=kvgate_stubs" +
	" --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin fastly/kv/v1/kv.proto"

// TestPythonClient generates Python stubs from proto/ with protoc and
// gRPC's Python plugin, as a Python service would, and runs
// kvgate_test.py against the real stack over gRPC: every RPC shape, error
// codes and the BadRequest detail naming the field.
func TestPythonClient(t *testing.T) {
	t.Parallel()
	root := kvtest.RepoRoot(t)
	requireFiles(t, "the Python test needs Debian's protoc, gRPC plugin, python3-grpcio and python3-protobuf",
		python, protoc, grpcPythonPlugin,
		filepath.Join(pythonPackages, "grpc", "__init__.py"),
		filepath.Join(pythonPackages, "google", "protobuf", "__init__.py"))

	stubs := t.TempDir()
	args := strings.Fields(strings.ReplaceAll(protocPython, "kvgate_stubs", stubs))
	run(t, root, nil, protoc, args[1:]...)
	here := filepath.Join(root, "test", "polyglot")
	run(t, here, nil, protoc, "-I", here, "-I", "/usr/include", "--python_out="+stubs, "googlerpc.proto")

	st := kvtest.Start(t, kvtest.Options{})
	env := []string{"KVGATE_ADDR=" + strings.TrimPrefix(st.URL, "http://"), "PYTHONPATH=" + stubs, "PYTHONDONTWRITEBYTECODE=1"}
	run(t, here, env, python, "-m", "unittest", "-v", "kvgate_test")
}
