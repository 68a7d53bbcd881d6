// Package stagetest helps test a subhost stage: it serves the stage
// in-process through real go-plugin gRPC, runs the stage protocol's
// conformance sequence against it, and checks that a test left the host as
// it found it.
package stagetest
