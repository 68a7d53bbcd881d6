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

    def attempt(self, args):
        """Run subhost ARGS and return its exit code, stdout and stderr,
        whatever they are: for a call whose failure the caller handles."""
        return self.module.run_command([self.bin] + list(args), environ_update={"LC_ALL": "C"})

    def run(self, args):
        """Run subhost ARGS; a failure fails the task with the CLI's own line."""
        rc, out, err = self.attempt(args)
        if rc != 0:
            self.module.fail_json(msg=last_line(rc, out, err), rc=rc, cmd=[self.bin] + list(args), stdout=out, stderr=err)
        return out

    def json(self, args):
        """Run subhost ARGS (which ask for --json) and decode what it prints."""
        return self.decode(args, self.run(args))

    def decode(self, args, out):
        try:
            return json.loads(out)
        except ValueError as e:
            self.module.fail_json(msg="subhost %s printed what is not JSON: %s" % (" ".join(args), e), stdout=out)

    def json_list(self, args):
        """Run a listing (`list --json`, `autostart list --json`) and return
        its entries and the problems it reported. A listing goes on past an
        entry it cannot read (a damaged state.json, a stray file such as
        autostart/web1.bak): it prints the others and exits 1 or 2, naming
        the bad one on stderr. One bad file must not fail every task on the
        host, so what it printed is used, and each line it wrote to stderr
        becomes a warning (and is returned for the caller to weigh)."""
        rc, out, err = self.attempt(args)
        entries = None
        if rc in (0, 1, 2):
            try:
                entries = json.loads(out)
            except ValueError:
                entries = None
        if not isinstance(entries, list):
            if rc != 0:
                self.module.fail_json(msg=last_line(rc, out, err), rc=rc, cmd=[self.bin] + list(args), stdout=out, stderr=err)
            self.module.fail_json(msg="subhost %s printed what is not a JSON list" % " ".join(args), stdout=out)
        problems = []
        if rc != 0:
            problems = [ln.strip() for ln in (err or "").splitlines() if ln.strip()]
            if not problems:
                problems = ["subhost %s exited with status %d" % (" ".join(args), rc)]
            for p in problems:
                self.module.warn(p)
        return entries, problems
