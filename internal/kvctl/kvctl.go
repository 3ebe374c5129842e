// Package kvctl is kvgate's command-line client: kvctl [--addr URL] COMMAND
// -s STORE [KEY]. It calls kvgate through the generated Go client over the
// Connect protocol, gRPC or gRPC-Web.
package kvctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"connectrpc.com/connect/v2"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
)

// Exit codes, the same for every command.
const (
	ExitOK       = 0 // success
	ExitFailure  = 1 // any other failure: unreachable server, refused token, bad input the server rejected
	ExitUsage    = 2 // bad flags or arguments; nothing was sent
	ExitNotFound = 3 // the item does not exist
	ExitConflict = 4 // a generation check failed (aborted) or --mode add found the key taken (already_exists)
	ExitPartial  = 5 // some items of an import, a bulk delete, a copy or a multi-get failed; each is reported
)

const exitCodesHelp = `Exit codes:
  0  success
  1  other failure (server unreachable, token refused, input the server rejected)
  2  usage error (bad flags or arguments; nothing was sent)
  3  not found (no such item)
  4  conflict (--if-generation did not match, or --mode add found the key taken)
  5  partial failure (some items of an import, a bulk delete, a copy or a multi-get
     failed; each is reported)

rm of several keys or a prefix, and cp, resume a call that ended early (unavailable,
or rate limited with a retry delay) from its cursor; when they stop for good they
print the cursor to pass back with --cursor.`

// cli is one invocation: its streams, global flags and client.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            func(string) string
	conn           connOptions
	store          string
	json           bool
	client         kvv1connect.KVStoreServiceClient
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// partialError reports that some items failed (each already reported): exit
// code 5.
type partialError struct{ failed int }

func (e partialError) Error() string { return fmt.Sprintf("%d items failed", e.failed) }

// localError is a failure on this side of the wire (a file that cannot be
// read, say): exit code 1.
type localError struct{ err error }

func (e localError) Error() string { return e.err.Error() }
func (e localError) Unwrap() error { return e.err }

// Run runs kvctl with args (without the program name) and returns its exit
// code. env looks up environment variables (os.Getenv in the binary).
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, env: env}
	root := c.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	c.reportError(err, code)
	return code
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kvctl [--addr URL] COMMAND -s STORE [KEY]",
		Short: "kvctl reads and writes Fastly KV Store items through kvgate",
		Long: "kvctl reads and writes Fastly KV Store items through kvgate, over the\n" +
			"Connect protocol, gRPC or gRPC-Web.\n\n" + exitCodesHelp,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Name() == "help" || cmd.Parent() != nil && cmd.Parent().Name() == "completion" || cmd.Name() == "completion" {
				return nil
			}
			if c.store == "" {
				return usagef("--store (-s) is required (or set KVCTL_STORE)")
			}
			client, err := c.conn.client()
			if err != nil {
				return err
			}
			c.client = client
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	c.conn.register(pf, c.env)
	pf.StringVarP(&c.store, "store", "s", c.env("KVCTL_STORE"), "KV Store id [$KVCTL_STORE]")
	pf.BoolVar(&c.json, "json", false, "print results as JSON")
	root.AddCommand(c.getCommand(), c.putCommand(), c.rmCommand(), c.lsCommand(), c.importCommand(), c.exportCommand(),
		c.cpCommand(), c.watchCommand())
	for _, sub := range root.Commands() {
		sub.Args = wrapArgs(sub.Args)
	}
	return root
}

// wrapArgs makes an argument-count mistake a usage error.
func wrapArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	if check == nil {
		return nil
	}
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// exitCode maps err to kvctl's exit codes.
func exitCode(err error) int {
	var pe partialError
	var le localError
	var ue usageError
	var ce *connect.Error
	switch {
	case errors.As(err, &pe):
		return ExitPartial
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &le):
		return ExitFailure
	case errors.As(err, &ce):
		switch ce.Code() {
		case connect.CodeNotFound:
			return ExitNotFound
		case connect.CodeAborted, connect.CodeAlreadyExists:
			return ExitConflict
		}
		return ExitFailure
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "unknown flag"):
		return ExitUsage
	}
	return ExitFailure
}

// reportError prints err on stderr, and with --json also as
// {"error":{"code","message","exit"}} on stdout.
func (c *cli) reportError(err error, exit int) {
	fmt.Fprintf(c.stderr, "kvctl: %v\n", err)
	if exit == ExitUsage {
		fmt.Fprintln(c.stderr, "Run 'kvctl --help' for usage.")
	}
	if connect.CodeOf(err) == connect.CodeUnauthenticated {
		fmt.Fprintln(c.stderr, "kvgate wants a token: pass --token or set KVCTL_TOKEN.")
	}
	var re resumeError
	resumable := errors.As(err, &re)
	if resumable {
		fmt.Fprintf(c.stderr, "kvctl: to resume: kvctl %s --cursor %s\n", re.again, shellQuote(re.cursor))
	}
	if !c.json {
		return
	}
	code := "unknown"
	switch exit {
	case ExitUsage:
		code = "usage"
	case ExitPartial:
		code = "partial_failure"
	default:
		var ce *connect.Error
		if errors.As(err, &ce) {
			code = ce.Code().String()
		}
	}
	e := map[string]any{"code": code, "message": err.Error(), "exit": exit}
	if resumable {
		e["cursor"] = re.cursor
	}
	c.printJSON(map[string]any{"error": e})
}

func (c *cli) printJSON(v any) { c.printJSONTo(c.stdout, v) }

func (c *cli) printJSONTo(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// isTerminal says whether w or r is an interactive terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}
