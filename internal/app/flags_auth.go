package app

import (
	"flag"

	"github.com/kvgate/kvgate/internal/auth"
)

// registerAuthFlags registers the flags that decide who may call kvgate.
func registerAuthFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	a := &cfg.Auth
	fs.StringVar(&a.TokensFile, "tokens", env.string("KVGATE_TOKENS", ""),
		"YAML file of the bearer tokens callers may use (SHA-256 hashes, stores, rights, rates); reloaded on SIGHUP and when it changes (env KVGATE_TOKENS)")
	fs.BoolVar(&a.FastlyTokenPassthrough, "fastly-token-passthrough", env.bool("KVGATE_FASTLY_TOKEN_PASSTHROUGH", false),
		"call Fastly with each caller's own API token, sent in the Fastly-Key header, instead of FASTLY_API_TOKEN (env KVGATE_FASTLY_TOKEN_PASSTHROUGH)")
	fs.BoolVar(&a.AllowUnauthenticated, "allow-unauthenticated", env.bool("KVGATE_ALLOW_UNAUTHENTICATED", false),
		"serve a non-loopback address with neither -tokens nor -fastly-token-passthrough, to anyone who reaches it (env KVGATE_ALLOW_UNAUTHENTICATED)")
	policyFlag(fs, env, &a.Health, "auth-health", "KVGATE_AUTH_HEALTH", "grpc.health.v1 health checks")
	policyFlag(fs, env, &a.Reflection, "auth-reflection", "KVGATE_AUTH_REFLECTION", "gRPC reflection")
}

// policyFlag registers the policy flag name (open or token, default open)
// for what the service is.
func policyFlag(fs *flag.FlagSet, env *envReader, p *auth.Policy, name, envName, what string) {
	*p = parseEnv(env, envName, auth.PolicyOpen, auth.ParsePolicy)
	fs.Func(name, "who may call "+what+": open (anyone) or token (any valid bearer token) (env "+envName+")",
		func(v string) (err error) {
			*p, err = auth.ParsePolicy(v)
			return err
		})
}
