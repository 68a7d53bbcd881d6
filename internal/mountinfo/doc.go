// Package mountinfo reads the kernel's mount tables, /proc/self/mountinfo
// and /proc/PID/mountinfo (proc(5)), and answers what the mount stages ask
// of them: what is visible at a mountpoint, where a device is mounted, a
// mount's propagation peer groups and an overlay's layers.
//
// Paths come back unescaped (the kernel writes a space as \040). A line
// that does not have the shape proc(5) gives is an error, not skipped: a
// table read wrongly could hide a mount from a caller deciding what to
// unmount.
package mountinfo
