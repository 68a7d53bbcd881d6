// Package loopdev attaches, finds and detaches Linux loop devices.
//
// Attach asks /dev/loop-control for a free device and configures it in one
// step with LOOP_CONFIGURE (falling back to LOOP_SET_FD + LOOP_SET_STATUS64
// on kernels older than 5.8), retrying when another process grabs the same
// free device first. It returns the device together with an open file
// descriptor on it: with Autoclear the kernel frees the device when its
// last user closes it, so a caller mounts (or otherwise uses) the device
// while it holds that descriptor and closes it afterwards.
//
// Loop device numbers are reused by the kernel, so a caller records a loop
// device by its backing file and rediscovers it with FindByBacking, which
// compares the backing file's device and inode, not only its path.
package loopdev
