# -*- coding: utf-8 -*-
# Copyright: the subhost authors
# License: as the subhost project's (none chosen yet)
"""Calling the subhost CLI from a module: the modules never reimplement
what subhost does, they run it and read its --json output and exit code."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

# The option every module of the collection takes (see doc_fragments/subhost.py).
ARGUMENT_SPEC = dict(
    subhost_bin=dict(type="path"),
)


def last_line(rc, out, err):
    """The line that says why the CLI failed: its last "subhost: ..." line
    on stderr (a usage error is followed by a "Run ... --help" hint), else
    its last line of output."""
    lines = [ln.strip() for ln in (err or "").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("subhost: "):
            return ln
    if lines:
        return lines[-1]
    lines = [ln.strip() for ln in (out or "").splitlines() if ln.strip()]
    if lines:
        return lines[-1]
    return "subhost exited with status %d" % rc


class Subhost(object):
    """The subhost CLI: `subhost_bin`, else `subhost` on PATH."""

    def __init__(self, module):
        self.module = module
        self.bin = module.params.get("subhost_bin") or module.get_bin_path("subhost", required=True)

    def run(self, args):
        """Run subhost ARGS; a failure fails the task with the CLI's own line."""
        cmd = [self.bin] + list(args)
        rc, out, err = self.module.run_command(cmd, environ_update={"LC_ALL": "C"})
        if rc != 0:
            self.module.fail_json(msg=last_line(rc, out, err), rc=rc, cmd=cmd, stdout=out, stderr=err)
        return out

    def json(self, args):
        """Run subhost ARGS (which ask for --json) and decode what it prints."""
        out = self.run(args)
        try:
            return json.loads(out)
        except ValueError as e:
            self.module.fail_json(msg="subhost %s --json printed what is not JSON: %s" % (" ".join(args), e), stdout=out)
