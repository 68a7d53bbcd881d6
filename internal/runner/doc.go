// Package runner runs a subhost's boot pipeline: it validates every stage
// before any changes anything, calls each stage's Up in order with the
// boot record so far, records "pending" before and the result after each
// call, rolls back every started stage (the failing one included) in
// reverse on any failure, timeout, plugin crash or interrupt, and tears
// down from the recorded state on stop. It holds no mount, netlink or
// namespace code: stages do that.
package runner
