// Package state keeps what the runner knows about each subhost under
// /run/subhost/NAME: state.json, written atomically before and after every
// stage call so that a runner killed at any instant leaves enough for
// `subhost stop NAME` to undo everything, and a lock file held for the
// whole of one operation.
package state
