package loopdev

import "testing"

// BenchmarkList: what one listing of the attached loop devices costs (it
// grows with the number of loop devices the host has ever made).
func BenchmarkList(b *testing.B) {
	for b.Loop() {
		if _, err := List(); err != nil {
			b.Fatal(err)
		}
	}
}
