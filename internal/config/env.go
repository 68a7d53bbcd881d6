package config

import (
	"strings"

	"github.com/subhost/subhost/sdk"
)

// EnvVars are the variables the environment may set instead of the
// config, as the old scripts allowed.
var EnvVars = []string{"DISKS", "BRIDGES"}

// ApplyEnv overrides DISKS and BRIDGES with the environment's value when
// it is set there: whitespace-separated words, an array, Origin
// "environment". vars must not be nil.
func ApplyEnv(vars map[string]sdk.Var, getenv func(string) (string, bool)) {
	for _, name := range EnvVars {
		if v, ok := getenv(name); ok {
			vars[name] = sdk.Var{Words: strings.Fields(v), IsArray: true, Origin: "environment"}
		}
	}
}
