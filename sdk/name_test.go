package sdk_test

import (
	"strings"
	"testing"

	"github.com/subhost/subhost/sdk"
)

func TestValidName(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"../x", `subhost name "../x": only letters, digits, "-" and "_" are allowed`},
		{"", "subhost name is empty"},
		{strings.Repeat("a", 41), "is too long (41 characters, at most 32)"},
		{"-rf", `subhost name "-rf" must start with a letter or digit`},
		{"_x", "must start with a letter or digit"},
		{"a b", "only letters, digits"},
		{"x/y", "only letters, digits"},
		{"é", "only letters, digits"},
		{"a\n", "only letters, digits"},
		{"tasks", "reserved"},
		{"release_agent", "reserved"},
	} {
		err := sdk.ValidName(tt.name)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !sdk.IsKind(err, sdk.KindInvalidConfig) {
			t.Errorf("sdk.ValidName(%q) = %v, want invalid config %q", tt.name, err, tt.want)
		}
	}
	for _, ok := range []string{"a", "web1", "9lives", "my-subhost", "db_2", "A-Z", strings.Repeat("x", 32)} {
		if err := sdk.ValidName(ok); err != nil {
			t.Errorf("sdk.ValidName(%q) = %v", ok, err)
		}
	}
}

func TestReservedDevNamesCoverTheGuestsOwnDev(t *testing.T) {
	for _, name := range []string{"null", "console", "pts", "ptmx", "shm", "kmsg", "log", "initctl"} {
		if !sdk.IsReservedDevName(name) {
			t.Errorf("%q is not reserved", name)
		}
	}
	for _, name := range []string{"vda", "vda1", "sdb", "nvme0n1"} {
		if sdk.IsReservedDevName(name) {
			t.Errorf("%q is reserved", name)
		}
	}
}
