package kvctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"connectrpc.com/connect/v2"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

// itemFailure is one item an import or a prefix delete could not write or
// delete.
type itemFailure struct {
	Index  *uint64 `json:"index,omitempty"`
	Line   int     `json:"line,omitempty"`
	Key    string  `json:"key"`
	Code   string  `json:"code"`
	Reason string  `json:"reason"`
}

func (c *cli) rmCommand() *cobra.Command {
	var prefix, cursor string
	var dryRun, yes, force, all bool
	var ifGen uint64
	res := &resumer{c: c, verb: "rm"}
	cmd := &cobra.Command{
		Use:   "rm -s STORE KEY... | rm -s STORE --prefix PREFIX [--dry-run] [--yes]",
		Short: "delete items: the KEYs given, or every item under --prefix",
		Long: "rm deletes one KEY with DeleteItem. Several KEYs, --prefix, --all and --dry-run go\n" +
			"through DeleteKeys: the keys deleted (or, on a dry run, that would be) are printed\n" +
			"on stdout as they are settled, the counts on stderr. A call that ends early\n" +
			"(kvgate unavailable or shutting down, a rate limit that says when to retry) is\n" +
			"resumed from its cursor, --retries times in a row without progress; when it stops\n" +
			"for good, the cursor that resumes it is printed (pass it back with --cursor).",
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			byPrefix := cmd.Flags().Changed("prefix") || all
			switch {
			case byPrefix && len(args) > 0:
				return usagef("give KEYs or --prefix, not both")
			case !byPrefix && len(args) == 0:
				return usagef("give a KEY, or --prefix (--all for every key)")
			case byPrefix && prefix == "" && !all:
				return usagef("an empty --prefix deletes every key: say --all")
			case all && prefix != "":
				return usagef("--all and --prefix do not go together")
			case cmd.Flags().Changed("if-generation") && (byPrefix || len(args) > 1 || dryRun || cursor != ""):
				return usagef("--if-generation goes with one KEY")
			case res.retries < 0:
				return usagef("--retries must not be negative")
			}
			if !byPrefix && len(args) == 1 && !dryRun && cursor == "" {
				return c.rmOne(cmd, args[0], force, ifGen)
			}
			req := &kvv1.DeleteKeysRequest{StoreId: c.store, DryRun: dryRun}
			again := "rm -s " + shellQuote(c.store)
			switch {
			case all:
				req.AllKeys = true
				again += " --all"
			case byPrefix:
				req.Prefix = prefix
				again += " --prefix " + shellQuote(prefix)
			default:
				req.Keys = args
				for _, k := range args {
					again += " " + shellQuote(k)
				}
			}
			if dryRun {
				again += " --dry-run"
			}
			if byPrefix && !dryRun && !yes && isTerminal(c.stdin) && isTerminal(c.stderr) {
				fmt.Fprintf(c.stderr, "Delete every key under %q in store %s? [y/N] ", prefix, c.store)
				answer, _ := bufio.NewReader(c.stdin).ReadString('\n')
				if a := strings.TrimSpace(strings.ToLower(answer)); a != "y" && a != "yes" {
					return usagef("not confirmed; nothing deleted")
				}
			}
			return c.rmMany(cmd, req, cursor, force, res, again)
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", "", "delete every key that begins with this")
	f.BoolVar(&all, "all", false, "delete every key of the store")
	f.BoolVar(&dryRun, "dry-run", false, "list what would be deleted, delete nothing")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation on a terminal")
	f.BoolVar(&force, "force", false, "succeed when a key does not exist")
	f.Uint64Var(&ifGen, "if-generation", 0, "delete only if the item's generation is this one (one KEY)")
	f.StringVar(&cursor, "cursor", "", "resume a deletion from the cursor a stopped one printed")
	res.register(cmd, defaultRetries, "times in a row a call that ended early (unavailable, rate limited) is resumed without progress; 0 never resumes")
	return cmd
}

// rmOne deletes one item with DeleteItem.
func (c *cli) rmOne(cmd *cobra.Command, key string, force bool, ifGen uint64) error {
	req := &kvv1.DeleteItemRequest{StoreId: c.store, Key: key, Force: force}
	if cmd.Flags().Changed("if-generation") {
		req.IfGenerationMatch = &ifGen
	}
	if _, err := c.client.DeleteItem(cmd.Context(), req); err != nil {
		return err
	}
	if c.json {
		c.printJSON(map[string]any{"key": req.Key, "deleted": true})
	}
	return nil
}

// Outcomes of a key in rmTally.state.
const (
	keyDeleted = iota + 1
	keyNotFound
	keyFailed
)

// rmTally accounts for the keys of a deletion across the calls that
// resume it. A call that stops reports the keys whose DELETE failed in the
// way that stopped it as failed, and the call that resumes tries them
// again: a key failed and then settled is no longer a failure. A list of
// keys (at most 10,000) is tracked key by key, since a resumed call sends
// DELETEs again for keys past its cursor that are already gone; a
// listing does not list those again, so only its failures are tracked.
type rmTally struct {
	list              bool
	state             map[string]int // list: every key's latest outcome
	failed            map[string]itemFailure
	order             []string // failed keys in the order first reported
	deleted, notFound int
}

// settled counts a key deleted (or found gone) and reports whether it is
// news.
func (t *rmTally) settled(key string, outcome int) bool {
	delete(t.failed, key)
	if t.list {
		prev := t.state[key]
		if prev == keyDeleted || prev == keyNotFound {
			return false // deleted by an earlier call of this deletion
		}
		t.state[key] = outcome
	}
	if outcome == keyDeleted {
		t.deleted++
	} else {
		t.notFound++
	}
	return true
}

func (t *rmTally) failure(f itemFailure) {
	if t.list {
		if prev := t.state[f.Key]; prev == keyDeleted || prev == keyNotFound {
			return
		}
		t.state[f.Key] = keyFailed
	}
	if _, ok := t.failed[f.Key]; !ok {
		t.order = append(t.order, f.Key)
	}
	t.failed[f.Key] = f
}

// failures are the keys that failed and were not settled since, in order.
func (t *rmTally) failures() []itemFailure {
	out := []itemFailure{}
	for _, k := range t.order {
		if f, ok := t.failed[k]; ok {
			out = append(out, f)
			delete(t.failed, k) // a key listed twice in order is reported once
		}
	}
	return out
}

// rmMany deletes what req selects with DeleteKeys, resuming from the
// cursor as long as res allows.
func (c *cli) rmMany(cmd *cobra.Command, req *kvv1.DeleteKeysRequest, cursor string, force bool, res *resumer, again string) error {
	ctx := cmd.Context()
	verb := "deleting"
	if req.GetDryRun() {
		verb = "listing"
	}
	bar := c.progress(-1, verb)
	t := &rmTally{list: len(req.GetKeys()) > 0, state: map[string]int{}, failed: map[string]itemFailure{}}
	var keys []string // --json --dry-run: the keys that would be deleted
	report := func(key string, outcome int) {
		if !t.settled(key, outcome) {
			return
		}
		bar.add(1, 0)
		if outcome != keyDeleted {
			return
		}
		if c.json {
			if req.GetDryRun() {
				keys = append(keys, key)
			}
			return
		}
		fmt.Fprintln(c.stdout, key)
	}
	var err error
	for {
		req.Cursor = cursor
		var progressed bool
		cursor, progressed, err = c.deleteKeysOnce(ctx, req, report, t)
		if err == nil || !res.again(ctx, err, progressed) {
			break
		}
	}
	bar.finish()
	failures := t.failures()
	for _, f := range failures {
		fmt.Fprintf(c.stderr, "kvctl: rm %s: %s: %s\n", f.Key, f.Code, f.Reason)
	}
	switch {
	case c.json && err == nil:
		out := map[string]any{"dry_run": req.GetDryRun(), "deleted": t.deleted, "not_found": t.notFound, "failures": failures}
		if req.GetDryRun() {
			out["deleted"] = 0
			out["keys"] = nonNil(keys)
		}
		if !t.list {
			out["prefix"] = req.GetPrefix()
		}
		c.printJSON(out)
	case !c.json:
		c.rmSummary(req.GetDryRun(), t, len(failures), err != nil)
	}
	if err != nil {
		if t.deleted+t.notFound+len(failures) == 0 && !transient(err) {
			return err
		}
		return resumeError{err: err, cursor: cursor, again: again}
	}
	if len(failures) > 0 {
		return partialError{len(failures)}
	}
	if t.list && t.notFound > 0 && !force && !req.GetDryRun() {
		return connect.NewError(connect.CodeNotFound, fmt.Sprintf("%d of the keys did not exist (--force: that is fine)", t.notFound))
	}
	return nil
}

// rmSummary prints a deletion's counts on stderr.
func (c *cli) rmSummary(dryRun bool, t *rmTally, failed int, stopped bool) {
	var b strings.Builder
	if dryRun {
		fmt.Fprintf(&b, "would delete %d keys", t.deleted)
	} else {
		fmt.Fprintf(&b, "deleted %d keys", t.deleted)
	}
	if t.notFound > 0 {
		fmt.Fprintf(&b, ", %d already gone", t.notFound)
	}
	if failed > 0 {
		fmt.Fprintf(&b, ", %d failed", failed)
	}
	if stopped {
		b.WriteString(" before stopping")
	}
	fmt.Fprintln(c.stderr, b.String())
}

// deleteKeysOnce makes one DeleteKeys call and hands each key it settles
// to report. It returns the cursor that resumes after what it reported
// and whether it settled any key.
func (c *cli) deleteKeysOnce(ctx context.Context, req *kvv1.DeleteKeysRequest, report func(string, int), t *rmTally) (string, bool, error) {
	cursor := req.GetCursor()
	progressed := false
	stream, err := c.client.DeleteKeys(ctx, req)
	if err != nil {
		return cursor, false, err
	}
	defer stream.Close()
	for {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return cursor, progressed, connect.NewError(connect.CodeUnavailable, "the deletion ended before it was done")
		}
		if err != nil {
			var ce *connect.Error
			if errors.As(err, &ce) {
				if d, ok := detail[*kvv1.DeleteKeysResponse](ce); ok {
					cursor = d.GetCursor()
				}
			}
			return cursor, progressed, err
		}
		for _, k := range msg.GetDeleted() {
			report(k, keyDeleted)
		}
		for _, k := range msg.GetNotFound() {
			report(k, keyNotFound)
		}
		progressed = progressed || len(msg.GetDeleted())+len(msg.GetNotFound()) > 0
		for _, f := range msg.GetFailures() {
			t.failure(itemFailure{Key: f.GetKey(), Code: f.GetCode(), Reason: f.GetReason()})
		}
		cursor = msg.GetCursor()
		if msg.GetDone() {
			return "", progressed, nil
		}
	}
}

// transient reports whether err is worth trying again later.
func transient(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeResourceExhausted, connect.CodeDeadlineExceeded,
		connect.CodeCanceled, connect.CodeUnknown, connect.CodeInternal, connect.CodeAborted:
		return true
	}
	return false
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// progress is a progress bar on stderr when stderr is a terminal, and
// nothing otherwise.
type progress struct {
	bar   *progressbar.ProgressBar
	items int64
	verb  string
}

// progress starts a bar counting bytes toward total (-1 when unknown).
func (c *cli) progress(total int64, verb string) *progress {
	p := &progress{verb: verb}
	if !isTerminal(c.stderr) {
		return p
	}
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(c.stderr),
		progressbar.OptionSetDescription(verb),
		progressbar.OptionShowBytes(total >= 0),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionClearOnFinish(),
	)
	return p
}

// add counts items and bytes done.
func (p *progress) add(items, bytes int) {
	if p.bar == nil {
		return
	}
	p.items += int64(items)
	p.bar.Describe(fmt.Sprintf("%s %d items", p.verb, p.items))
	if bytes > 0 {
		_ = p.bar.Add(bytes)
	} else {
		_ = p.bar.Add(items)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
