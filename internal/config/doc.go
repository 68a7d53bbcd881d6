// Package config reads a subhost's bash config file without running it.
//
// The old scripts sourced config as bash, so existing configs are bash
// syntax. Executing them as root would run whatever they contain; instead
// the file is parsed (mvdan.cc/sh/v3/syntax) and only plain assignments are
// accepted: literal, quoted and array values, appends, export/declare/
// readonly, and $NAME or ${NAME} references to variables set earlier in the
// same file. Anything that would make bash run or compute something is an
// error at FILE:LINE:COL. The package also checks subhost names, which are
// used to build paths.
package config
