// Command exec is the subhost stage that runs a site's executable, most
// often a shell script, as a pipeline step: a site adds a step with a
// script and one stage block, as LXC hooks and CNI plugins take any
// executable.
//
//	stage "dns" {
//	  plugin    = "exec"
//	  script    = "/etc/subhost/hooks/dns-hosts.sh"
//	  hosts_file = "/etc/subhost/hosts"
//	}
//
// Each call (validate, up, down, check) runs the script once with the
// verb as $1, from /, in a process group of its own, with:
//
//   - a fixed environment, nothing inherited: PATH, SUBHOST_NAME,
//     SUBHOST_HOME, SUBHOST_STAGE (the block's name), SUBHOST_ROOT,
//     SUBHOST_NETNS and SUBHOST_PID from the boot record (empty when not
//     known yet: validate's record is always empty), every stage
//     parameter as SUBHOST_PARAM_<NAME> (upper-cased, '-' and other
//     characters not allowed in a variable name turned into '_') and
//     every config variable as SUBHOST_VAR_<NAME> (arrays joined with
//     single spaces);
//   - the whole request as one JSON object on standard input (see
//     scriptInput), its state being what the script's last up printed.
//
// Exit 0 with an empty standard output, or one JSON object
// {"extra": {"key": "value"}, "state": ...}: up's extra joins the boot
// record's site map (Record.Extra), its state comes back on the next call.
// Anything else on standard output fails the call, naming the script. A
// non-zero exit fails the call with the script's last line of standard
// error; exit 2 from validate is bad input (the runner exits 2), a failing
// check reports "not found". Every standard error line is logged, with
// the stage name, at level info.
//
// The script is killed with its whole process group (SIGTERM, then
// SIGKILL after a short grace) shortly before the call's deadline, so that
// it is gone before the runner kills this plugin for the stage's timeout,
// and at once when the caller cancels the call. Its group is led by a
// guard, this executable re-run with guardArg, which kills the group if
// this plugin dies mid-call (the runner kills plugins with their own
// group, not the script's). What a script that has exited leaves running
// in the background is left alone, and a process it moved to another
// process group or session is out of reach: that is how a script starts
// a daemon.
//
// The script runs as root, so it and its directory must pass the rule for
// plugins (internal/trust: owned by root, not writable by group or
// others), and it must be an executable regular file; otherwise every call
// is refused as bad input before anything runs.
package main
