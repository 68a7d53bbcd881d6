package main

import (
	"io"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// captureLogger is a logger that appends each message to *lines.
func captureLogger(lines *[]string) hclog.Logger {
	var mu sync.Mutex
	return hclog.New(&hclog.LoggerOptions{
		Output: io.Discard,
		Level:  hclog.Trace,
		// A sink sees every message with its level.
		Exclude: func(_ hclog.Level, msg string, _ ...any) bool {
			mu.Lock()
			*lines = append(*lines, msg)
			mu.Unlock()
			return true
		},
	})
}
