package service

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestIndexRanges(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		add  []uint64
		want indexRanges
	}{
		{"empty", nil, nil},
		{"one", []uint64{5}, indexRanges{{5, 6}}},
		{"ascending merges", []uint64{0, 1, 2, 3}, indexRanges{{0, 4}}},
		{"descending merges", []uint64{3, 2, 1, 0}, indexRanges{{0, 4}}},
		{"gap stays", []uint64{0, 1, 3, 4}, indexRanges{{0, 2}, {3, 5}}},
		{"gap filled joins", []uint64{0, 1, 3, 4, 2}, indexRanges{{0, 5}}},
		{"duplicates ignored", []uint64{7, 7, 8, 7}, indexRanges{{7, 9}}},
		{"insert before", []uint64{10, 2}, indexRanges{{2, 3}, {10, 11}}},
	}
	for _, tc := range cases {
		var r indexRanges
		for _, i := range tc.add {
			r.add(i)
		}
		if !slices.Equal(r, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, r, tc.want)
		}
	}
}

// TestIndexRangesRandom checks the runs against a plain set for shuffled
// inserts.
func TestIndexRangesRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		set := map[uint64]bool{}
		var r indexRanges
		for range 50 {
			i := rng.Uint64N(80)
			set[i] = true
			r.add(i)
		}
		var got []uint64
		for k, run := range r {
			if run.start >= run.end || (k > 0 && r[k-1].end >= run.start) {
				t.Fatalf("runs not ordered and separate: %v", r)
			}
			for i := run.start; i < run.end; i++ {
				got = append(got, i)
			}
		}
		if len(got) != len(set) {
			t.Fatalf("runs %v hold %d positions, want %d", r, len(got), len(set))
		}
		for _, i := range got {
			if !set[i] {
				t.Fatalf("runs %v hold %d, never added", r, i)
			}
		}
	}
}
