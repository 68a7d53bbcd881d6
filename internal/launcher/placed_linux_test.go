package launcher

import (
	"encoding/json"
	"os"
	"testing"
)

// TestAwaitPlaced: the launcher goes on only on the plugin's word that it
// is in the guest's cgroups; a pipe that ends without it (the plugin died
// while it moved the launcher) stops the launch.
func TestAwaitPlaced(t *testing.T) {
	for _, tt := range []struct {
		name, after string
		ok          bool
	}{
		{"placed", PlacedToken, true},
		{"plugin died before placing", "", false},
		{"something else", "what?\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			json.NewEncoder(w).Encode(Config{Root: "/x"})
			w.WriteString(tt.after)
			w.Close()
			dec := json.NewDecoder(r)
			var cfg Config
			if err := dec.Decode(&cfg); err != nil || cfg.Root != "/x" {
				t.Fatalf("decode: %v %+v", err, cfg)
			}
			err = awaitPlaced(dec, r)
			if (err == nil) != tt.ok {
				t.Fatalf("awaitPlaced = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
