package app

import (
	"flag"
	"strings"
)

// registerCORSFlags registers the flags that let browser pages from other
// origins call kvgate. The origins are checked by Config.Validate.
func registerCORSFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	cfg.CORS.Origins = splitOrigins(env.getenv("KVGATE_CORS_ORIGINS"))
	fs.Func("cors-origins", "comma-separated browser origins (scheme://host[:port]; *.name for subdomains; * for any) "+
		"whose pages may call kvgate; empty allows none (env KVGATE_CORS_ORIGINS)",
		func(v string) error {
			cfg.CORS.Origins = splitOrigins(v)
			return nil
		})
	fs.BoolVar(&cfg.CORS.AllowCredentials, "cors-allow-credentials",
		env.bool("KVGATE_CORS_ALLOW_CREDENTIALS", false),
		"let those pages send the cookies, HTTP authentication or TLS client certificates the browser holds for kvgate; "+
			"not with -cors-origins '*' (env KVGATE_CORS_ALLOW_CREDENTIALS)")
}

// splitOrigins splits a comma-separated list, dropping blanks.
func splitOrigins(list string) []string {
	var out []string
	for o := range strings.SplitSeq(list, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}
