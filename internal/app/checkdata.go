package app

import (
	"errors"
	"fmt"
	"io"

	"github.com/kvgate/kvgate/upstream/localstore"
)

// CheckData checks the local store's data file in dir without serving or
// changing it (kvlocal -check-data), and writes to w what it found: the
// file's size, its stores and items, and every problem, bbolt's full
// consistency check's included. It returns nil when the file is sound, an
// error matching localstore.ErrDamaged when it is damaged, and another
// error when it cannot be checked (no file, or another process holds it).
func CheckData(w io.Writer, dir string) error {
	if dir == "" {
		return errors.New("-check-data needs the data directory (-data): a store kept in memory has no file")
	}
	rep, err := localstore.CheckDataFile(dir, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "data file: %s (%d bytes)\n", rep.Path, rep.FileBytes)
	partial := ""
	if !rep.FullCheck {
		partial = ", counted until reading failed"
	}
	fmt.Fprintf(w, "stores: %d\n", rep.Stores)
	fmt.Fprintf(w, "items: %d (%d bytes of keys and records%s)\n", rep.Items, rep.ItemBytes, partial)
	if rep.FullCheck {
		fmt.Fprintln(w, "full consistency check: run")
	} else {
		fmt.Fprintln(w, "full consistency check: not run, since reading the file failed first")
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	if rep.Sound() {
		fmt.Fprintln(w, "sound")
		return nil
	}
	if n := len(rep.Problems); n == 1 {
		fmt.Fprintln(w, "damaged: 1 problem")
	} else {
		fmt.Fprintf(w, "damaged: %d problems\n", n)
	}
	return &localstore.DamagedError{Path: rep.Path, Problems: rep.Problems}
}
