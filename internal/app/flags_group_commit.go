package app

import (
	"flag"
	"strconv"
)

// registerGroupCommitFlags registers how PutItem overwrites to one store
// are committed together in batch PUTs.
func registerGroupCommitFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	cfg.GroupCommit.Disabled = !env.bool("KVGATE_GROUP_COMMIT", true)
	fs.Var(offSwitch{&cfg.GroupCommit.Disabled}, "group-commit",
		"commit PutItem overwrites to one store together: while a write to the store is in flight, the next ones "+
			"queue and go out as one batch PUT when it returns; false sends one PUT per PutItem (default true) (env KVGATE_GROUP_COMMIT)")
	fs.DurationVar(&cfg.GroupCommit.Linger, "group-commit-linger", env.duration("KVGATE_GROUP_COMMIT_LINGER", 0),
		"with group commit, how long a write that finds its store idle waits for others to join its batch PUT; "+
			"0 sends it at once (env KVGATE_GROUP_COMMIT_LINGER)")
}

// offSwitch is a boolean flag that sets a Disabled field: -name=false
// disables.
type offSwitch struct{ disabled *bool }

func (o offSwitch) String() string {
	if o.disabled == nil {
		return "true"
	}
	return strconv.FormatBool(!*o.disabled)
}

func (o offSwitch) Set(v string) error {
	on, err := strconv.ParseBool(v)
	if err != nil {
		return err
	}
	*o.disabled = !on
	return nil
}

func (o offSwitch) IsBoolFlag() bool { return true }
