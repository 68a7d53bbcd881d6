package config

import (
	"strings"
	"unicode/utf8"

	"github.com/subhost/subhost/sdk"
)

// EnvVars are the variables the environment may set instead of the
// config, as the old scripts allowed.
var EnvVars = []string{"DISKS", "BRIDGES"}

// ApplyEnv overrides DISKS and BRIDGES with the environment's value when
// it is set there: whitespace-separated words, an array, Origin
// "environment". vars must not be nil. A value that is not UTF-8 text is
// refused, as a config's is (see Parse).
func ApplyEnv(vars map[string]sdk.Var, getenv func(string) (string, bool)) error {
	for _, name := range EnvVars {
		if v, ok := getenv(name); ok {
			if !utf8.ValidString(v) {
				return sdk.Invalidf("environment variable %s is not UTF-8 text (a name in another encoding?)", name)
			}
			vars[name] = sdk.Var{Words: strings.Fields(v), IsArray: true, Origin: "environment"}
		}
	}
	return nil
}
