// Package trust decides whether a file the runner reads as root may be
// believed: configs, pipeline files and plugin executables must be owned by
// root and not writable by group or others, or anyone who can write them can
// run code as root. Open applies the rule to an executable and its
// directory.
package trust
