#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the subhost authors
# License: as the subhost project's (none chosen yet)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: subhost
short_description: A subhost's config, autostart enrolment and state
description:
  - Writes a subhost's bash C(config) from a dict of variables, enrols it in (or withdraws it from) the host's
    autostart, and brings it to the wanted state with C(subhost run --detach) or C(subhost stop).
  - Idempotent; C(changed) only when the config, its owner or mode, the enrolment or the state changed.
  - The config is written atomically (a temporary file in the same directory, read back with C(subhost config --json),
    then renamed over the old one), owned by root with mode 0644, each word quoted so that subhost's parser reads back
    exactly the value given.
  - Supports check mode, and C(--diff) shows the config's diff.
version_added: "0.1.0"
author:
  - the subhost authors
options:
  name:
    description:
      - The subhost's name (letters, digits, C(_) and C(-), at most 32).
    type: str
    required: true
  pipeline:
    description:
      - The pipeline it runs with (see C(subhost pipelines)).
    type: str
    default: pretend-boot
  home:
    description:
      - The subhost's own directory, which holds its C(config).
      - By default the pipeline's home followed by C(name) (C(/opt/sub/NAME) for C(pretend-boot)).
    type: path
  state:
    description:
      - C(running) boots it (C(subhost run --detach)) unless it runs; C(stopped) powers it off and brings every stage down
        (C(subhost stop)).
    type: str
    choices: [running, stopped]
    default: running
  config:
    description:
      - The variables of its config. A string sets a variable; a list sets a bash array (C(DISKS), C(BRIDGES), C(MOUNTS)...).
        Numbers are written as their decimal strings; booleans and nulls are refused (quote them).
      - A value holding a newline or a NUL byte is refused.
      - Variables already in the file that are not named here are kept, unless C(config_exclusive=true).
      - When omitted, the config is not touched.
    type: dict
  config_exclusive:
    description:
      - Remove from the config every variable that C(config) does not name.
    type: bool
    default: false
  enabled:
    description:
      - C(true) enrols it in the host's autostart (C(subhost enable)), C(false) withdraws it (C(subhost disable)).
      - When omitted, the enrolment is not touched.
      - An enrolment or state that subhost cannot read (another subhost's, or a stray file such as C(web1.bak) in the
        autostart directory) is a warning; when it is this subhost's own enrolment, it is written anew or removed.
    type: bool
  order:
    description:
      - Its autostart order (lower starts first; equal orders start in parallel). With C(enabled=true); default 0.
    type: int
  group:
    description:
      - Its autostart group (C(subhost autostart start --group G)). With C(enabled=true).
    type: str
  restart_on_change:
    description:
      - When the config (or the pipeline or home) of a running subhost changed, stop it and run it again.
      - When C(false), it runs on with its old settings and the result says C(needs_restart=true).
    type: bool
    default: false
  stop_timeout:
    description:
      - How long the guest gets to power off before it is killed (C(subhost stop --timeout), for example C(30s)).
      - By default subhost's own default.
    type: str
extends_documentation_fragment:
  - subhost.subhost.subhost
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
'''

EXAMPLES = r'''
- name: web1 runs from its disk image, plugged into the homenet bridge
  subhost.subhost.subhost:
    name: web1
    config:
      DISKS: ["vda:1:/disks/web1.raw", "vdb:1:/disks/web1-data.raw"]
      BRIDGES: ["homenet:06:a7:dd:b4:02:f2"]
    enabled: true
    order: 10
    restart_on_change: true

- name: a control subhost in its own tree, powered off
  subhost.subhost.subhost:
    name: build1
    pipeline: control
    home: /srv/subhost/build1
    state: stopped
    config:
      BASE: /srv/bases/bookworm
    config_exclusive: true
'''

RETURN = r'''
name:
  description: The subhost's name.
  returned: always
  type: str
  sample: web1
home:
  description: Its home directory.
  returned: always
  type: str
  sample: /opt/sub/web1
config_path:
  description: Its config file.
  returned: always
  type: str
  sample: /opt/sub/web1/config
config_changed:
  description: Whether the config was (or, in check mode, would be) written.
  returned: always
  type: bool
needs_restart:
  description:
    - The subhost runs with an older config, pipeline or home than the one asked for; it was not restarted because
      C(restart_on_change=false).
  returned: always
  type: bool
status:
  description: C(subhost status --json NAME) after the task (before it, in check mode).
  returned: always
  type: dict
  sample: {"name": "web1", "pipeline": "pretend-boot", "state": "running", "pid": 4242, "home": "/opt/sub/web1"}
'''

import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.subhost.subhost.plugins.module_utils.subhost_cli import ARGUMENT_SPEC, Subhost
from ansible_collections.subhost.subhost.plugins.module_utils.subhost_config import (
    ConfigError, from_cli, merge, normalize, render, same,
)

CONFIG_MODE = 0o644

# States in which the guest runs (or is on its way up).
UP = ("running", "booting")


class Task(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.cli = Subhost(module)
        self.changed = False
        self.result = dict(name=self.p["name"], config_changed=False, needs_restart=False)

    def target(self):
        args = ["--pipeline", self.p["pipeline"]]
        if self.p["home"]:
            args += ["--home", self.p["home"]]
        return args

    def run(self):
        if os.geteuid() != 0:
            self.module.fail_json(msg="subhost.subhost.subhost runs subhost and writes root's configs: run it as root (become: true)")
        shown = self.cli.json(["config", "--json"] + self.target() + [self.p["name"]])
        self.home, self.path = shown["home"], shown["config"]
        self.result.update(home=self.home, config_path=self.path)
        if self.p["config"] is not None:
            self.converge_config(shown)
        if self.p["enabled"] is not None:
            self.converge_enrolment()
        self.converge_state()
        self.result["status"] = self.status()
        self.module.exit_json(changed=self.changed, **self.result)

    # --- config ---

    def converge_config(self, shown):
        try:
            desired = normalize(self.p["config"])
        except ConfigError as e:
            self.module.fail_json(msg="%s: %s" % (self.path, e), **self.result)
        current = from_cli(shown["vars"]) if shown["exists"] else []
        want = merge(current, desired, self.p["config_exclusive"])
        before = read_text(self.path) if shown["exists"] else ""
        rewrite = not shown["exists"] or not same(current, want)
        text = render(self.p["name"], want) if rewrite else before
        if self.module._diff and rewrite:
            self.result["diff"] = dict(before=before, after=text, before_header=self.path, after_header=self.path)
        if rewrite:
            self.result["config_changed"] = self.changed = True
            if not self.module.check_mode:
                self.write(text, want)
        elif not owned_as_wanted(self.path):
            self.changed = True
            if not self.module.check_mode:
                os.chown(self.path, 0, 0)
                os.chmod(self.path, CONFIG_MODE)

    def write(self, text, want):
        """Write the config atomically: a temporary file beside it, read
        back by subhost itself, then renamed over it."""
        d = os.path.dirname(self.path)
        if not os.path.isdir(d):
            os.makedirs(d, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".config.", dir=d)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fchown(f.fileno(), 0, 0)
                os.fchmod(f.fileno(), CONFIG_MODE)
                os.fsync(f.fileno())
            back = self.cli.json(["config", "--json"] + self.target() + ["--config", tmp, self.p["name"]])
            if not same(from_cli(back["vars"]), want):
                self.module.fail_json(msg="%s: subhost reads the rendered config back differently; nothing was changed" % self.path,
                                      rendered=text, read_back=back["vars"], **self.result)
            os.rename(tmp, self.path)
            tmp = None
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        finally:
            if tmp is not None:
                os.unlink(tmp)

    # --- autostart ---

    def converge_enrolment(self):
        name = self.p["name"]
        entries, problems = self.cli.json_list(["autostart", "list", "--json"])
        entry = next((e for e in entries if e.get("name") == name), None)
        # The listing leaves out an enrolment it cannot read (or whose
        # subhost's state it cannot read). When that is this one, it is
        # written anew (enabled) or removed (disabled), not taken as absent.
        unknown = entry is None and any(names(line, name) for line in problems)
        if not self.p["enabled"]:
            if entry is not None or unknown:
                self.act(["disable", name])
            return
        order, group = self.p["order"] or 0, self.p["group"] or ""
        home = self.home if self.p["home"] else ""
        if entry is not None and (entry.get("order", 0), entry.get("group", ""), entry.get("pipeline") or "pretend-boot",
                                  entry.get("home", "")) == (order, group, self.p["pipeline"], home):
            return
        args = ["enable", "--pipeline", self.p["pipeline"], "--order", str(order)]
        if home:
            args += ["--home", home]
        if group:
            args += ["--group", group]
        self.act(args + [name])

    # --- state ---

    def status(self):
        return self.cli.json(["status", "--json", self.p["name"]])

    def stop(self):
        args = ["stop"]
        if self.p["stop_timeout"]:
            args += ["--timeout", self.p["stop_timeout"]]
        self.act(args + [self.p["name"]])

    def start(self):
        self.act(["run", "--detach"] + ["--pipeline", self.p["pipeline"], "--home", self.home, self.p["name"]])

    def converge_state(self):
        st = self.status()
        state = st.get("state", "stopped")
        if self.p["state"] == "stopped":
            if state != "stopped":
                self.stop()
            return
        if state in UP:
            stale = self.result["config_changed"] or st.get("home", self.home) != self.home or \
                st.get("pipeline", self.p["pipeline"]) != self.p["pipeline"]
            if not stale:
                return
            if not self.p["restart_on_change"]:
                self.result["needs_restart"] = True
                return
            self.stop()
        elif state not in ("stopped", "hibernating"):
            # failed, stopping: bring what is left down before booting again
            self.stop()
        self.start()

    def act(self, args):
        """A CLI call that changes the host: skipped in check mode."""
        self.changed = True
        if not self.module.check_mode:
            self.cli.run(args)


def names(line, name):
    """Whether a line subhost wrote about an entry it could not read is
    about NAME: "subhost NAME: ..." (its state) or a path ending in /NAME
    (its enrolment file, "ETC/autostart/NAME:3: ...")."""
    return line.startswith("subhost %s: " % name) or re.search(r"/%s(:|\s|$)" % re.escape(name), line) is not None


def read_text(path):
    with open(path) as f:
        return f.read()


def owned_as_wanted(path):
    st = os.lstat(path)
    return st.st_uid == 0 and st.st_gid == 0 and st.st_mode & 0o7777 == CONFIG_MODE


def main():
    spec = dict(
        name=dict(type="str", required=True),
        pipeline=dict(type="str", default="pretend-boot"),
        home=dict(type="path"),
        state=dict(type="str", default="running", choices=["running", "stopped"]),
        config=dict(type="dict"),
        config_exclusive=dict(type="bool", default=False),
        enabled=dict(type="bool"),
        order=dict(type="int"),
        group=dict(type="str"),
        restart_on_change=dict(type="bool", default=False),
        stop_timeout=dict(type="str"),
    )
    spec.update(ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_by=dict(order="enabled", group="enabled"))
    Task(module).run()


if __name__ == "__main__":
    main()
