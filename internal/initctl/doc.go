// Package initctl reads the requests that sysvinit's telinit, shutdown,
// halt and reboot write into /run/initctl, and decides what each one
// means for a subhost: power off, reboot, or nothing.
//
// The wire format is sysvinit's struct init_request (initreq.h): 384
// bytes in the writer's native byte order,
//
//	int  magic;      // 0x03091969
//	int  cmd;        // INIT_CMD_*
//	int  runlevel;   // the runlevel as a character: '0', '6', 'S'...
//	int  sleeptime;  // seconds between SIGTERM and SIGKILL
//	char data[368];  // SETENV/UNSETENV: NUL-terminated "NAME=value" strings
//
// A write of at most PIPE_BUF bytes into a FIFO is atomic, so one read
// returns whole writes, possibly several back to back. Anything that is
// not a well-formed request (a short write, a bad magic, an unknown
// runlevel, plain text such as "x\n") means power off, as the original
// subhost-init script powered off on any write at all.
package initctl
