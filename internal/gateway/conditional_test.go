package gateway

import (
	"reflect"
	"testing"

	"github.com/kvgate/kvgate/service"
)

func TestParseIfNoneMatch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		values []string
		want   service.HeldGenerations
	}{
		{"one tag", []string{`"42"`}, service.HeldGenerations{Generations: []uint64{42}}},
		{"weak tag", []string{`W/"42"`}, service.HeldGenerations{Generations: []uint64{42}}},
		{"list", []string{`"1", W/"2" ,"3"`}, service.HeldGenerations{Generations: []uint64{1, 2, 3}}},
		{"several header lines", []string{`"1"`, `"2"`}, service.HeldGenerations{Generations: []uint64{1, 2}}},
		{"any", []string{"*"}, service.HeldGenerations{Any: true}},
		{"largest generation", []string{`"18446744073709551615"`}, service.HeldGenerations{Generations: []uint64{1<<64 - 1}}},
		{"foreign tags match nothing", []string{`"abc", "a,b", "", "-1", "+7", "007", "18446744073709551616", "7"`}, service.HeldGenerations{Generations: []uint64{7}}},
		{"unquoted tag ends the list", []string{`42, "7"`}, service.HeldGenerations{}},
		{"unterminated tag", []string{`"7", "8`}, service.HeldGenerations{Generations: []uint64{7}}},
		{"lower-case weak prefix is not one", []string{`w/"7"`}, service.HeldGenerations{}},
		{"empty", []string{""}, service.HeldGenerations{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := parseIfNoneMatch(tc.values); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseIfNoneMatch(%q) = %+v; want %+v", tc.values, got, tc.want)
			}
		})
	}
}

func TestFormatETag(t *testing.T) {
	t.Parallel()
	for gen, want := range map[uint64]string{0: `"0"`, 1750707679010222: `"1750707679010222"`, 1<<64 - 1: `"18446744073709551615"`} {
		if got := formatETag(gen); got != want {
			t.Errorf("formatETag(%d) = %s; want %s", gen, got, want)
		}
		if held := parseIfNoneMatch([]string{formatETag(gen)}); !held.Matches(gen) {
			t.Errorf("the ETag of %d does not match it in If-None-Match", gen)
		}
	}
}
