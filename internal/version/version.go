// Package version holds the build's version, set by the Makefile.
package version

// Version is overridden at link time with the git description.
var Version = "dev"
