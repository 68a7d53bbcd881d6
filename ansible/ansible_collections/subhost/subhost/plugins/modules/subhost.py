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
      - Stopping does not read the config, so a config that subhost refuses does not keep it from C(stopped) (a warning
        says so).
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
      - A config that subhost refuses (not root's, writable by group or others, a symlink, bad syntax) is replaced by a new
        file of root's, with a warning. Without C(config_exclusive) that takes a file whose variables are all named here;
        the module does not carry variables that others could have written into a file that subhost trusts, and fails
        naming them instead.
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
      - When a running subhost runs with another config (or pipeline or home) than the one asked for, stop it and run it
        again. The config is compared with the one it was brought up with (C(subhost status --json) reports it), so a
        restart left pending by an earlier run (without C(restart_on_change), or whose stop failed) is done too.
      - When C(false), it runs on with its old settings and the result says C(needs_restart=true), at every run until it
        is restarted.
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
    - The subhost runs with another config (as it was brought up, whichever run changed the file), pipeline or home than
      the one asked for; it was not restarted because C(restart_on_change=false).
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
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.subhost.subhost.plugins.module_utils.subhost_cli import ARGUMENT_SPEC, Subhost, last_line
from ansible_collections.subhost.subhost.plugins.module_utils.subhost_config import (
    ConfigError, from_cli, merge, normalize, render, same,
)

CONFIG_MODE = 0o644

# States in which the guest runs (or is on its way up).
UP = ("running", "booting")

# The most of a refused config the module reads to see what it sets
# (subhost's own limit is far below).
MAX_CONFIG = 1 << 20


class Task(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.cli = Subhost(module)
        self.changed = False
        self.result = dict(name=self.p["name"], config_changed=False, needs_restart=False)
        # The variables the config holds once the task is done (or would,
        # in check mode); None when the module cannot know them.
        self.want = None

    def target(self):
        args = ["--pipeline", self.p["pipeline"]]
        if self.p["home"]:
            args += ["--home", self.p["home"]]
        return args

    def run(self):
        if os.geteuid() != 0:
            self.module.fail_json(msg="subhost.subhost.subhost runs subhost and writes root's configs: run it as root (become: true)")
        shown, refused = self.show()
        self.home, self.path = shown["home"], shown["config"]
        self.result.update(home=self.home, config_path=self.path)
        if self.p["config"] is not None:
            self.converge_config(shown, refused)
        elif refused is None:
            self.want = from_cli(shown["vars"]) if shown["exists"] else []
        else:
            self.module.warn(refused)
        if self.p["enabled"] is not None:
            self.converge_enrolment()
        self.converge_state()
        self.result["status"] = self.status()
        self.module.exit_json(changed=self.changed, **self.result)

    def show(self):
        """The subhost's home and config file, and what subhost reads from
        the file (`subhost config --json`), with None; or, when subhost
        refuses the file (not root's, writable by others, a symlink, bad
        syntax...), its paths and the refusal. Such a file must not stop
        the module from replacing it, nor from stopping or withdrawing the
        subhost, which do not read it: its paths then come from a call
        that reads no config (--config naming a file that does not exist;
        the default is HOME/config), and a call that fails there too (an
        unknown pipeline) fails the task with subhost's own line."""
        args = ["config", "--json"] + self.target() + [self.p["name"]]
        rc, out, err = self.cli.attempt(args)
        if rc == 0:
            return self.cli.decode(args, out), None
        d = tempfile.mkdtemp(prefix="subhost-paths.")
        try:
            shown = self.cli.json(["config", "--json"] + self.target() + ["--config", os.path.join(d, "none"), self.p["name"]])
        finally:
            os.rmdir(d)
        path = os.path.join(shown["home"], "config")
        why = last_line(rc, out, err)
        if why.startswith("subhost: "):
            why = why[len("subhost: "):]
        return dict(shown, config=path, exists=os.path.lexists(path), vars={}), why

    # --- config ---

    def converge_config(self, shown, refused):
        try:
            desired = normalize(self.p["config"])
        except ConfigError as e:
            self.module.fail_json(msg="%s: %s" % (self.path, e), **self.result)
        before = ""
        if refused is None:
            current = from_cli(shown["vars"]) if shown["exists"] else []
            if shown["exists"]:
                before = read_text(self.path)
        else:
            current = self.read_refused(refused, desired)
            self.module.warn("subhost refuses %s (%s): the module replaces it with a config of root's" % (self.path, refused))
            try:
                # Not followed if a symlink, never blocking on a FIFO.
                before = read_private(self.path).decode("utf-8", "replace")
            except (OSError, ValueError):
                pass
        want = self.want = merge(current, desired, self.p["config_exclusive"])
        # A refused file is always replaced by a new one of root's, even
        # when it reads as wanted: whoever could write it could change it
        # again between a check and a chmod.
        rewrite = refused is not None or not shown["exists"] or not same(current, want)
        text = render(self.p["name"], want) if rewrite else before
        if self.module._diff and rewrite:
            self.result["diff"] = dict(before=before, after=text, before_header=self.path, after_header=self.path)
        if rewrite:
            self.result["config_changed"] = self.changed = True
            if not self.module.check_mode:
                self.write(text, want)
        elif not owned_as_wanted(self.path):
            # Only root can write this file (subhost read it): its owner
            # and mode can be put right in place.
            self.changed = True
            if not self.module.check_mode:
                os.chown(self.path, 0, 0)
                os.chmod(self.path, CONFIG_MODE)

    def read_refused(self, refused, desired):
        """The variables of a config that subhost refuses, for the file
        that replaces it. With config_exclusive nothing of it is kept, so
        nothing of it is read. Otherwise it is read through a private copy
        with subhost's parser; but a variable the playbook does not set is
        not carried from a file others could have written into one subhost
        trusts: that would undo subhost's check, so the task fails instead
        and says what to do."""
        if self.p["config_exclusive"] or not os.path.lexists(self.path):
            return []
        try:
            text = read_private(self.path)
        except (OSError, ValueError) as e:
            self.module.fail_json(msg="subhost refuses %s (%s), and the module cannot read it to keep the variables the playbook "
                                  "does not set (%s): set config_exclusive: true to replace it" % (self.path, refused, e), **self.result)
        d = tempfile.mkdtemp(prefix="subhost-config.")
        try:
            copy = os.path.join(d, "config")
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(text)
            args = ["config", "--json"] + self.target() + ["--config", copy, self.p["name"]]
            rc, out, err = self.cli.attempt(args)
        finally:
            shutil.rmtree(d)
        if rc != 0:
            self.module.fail_json(msg="subhost refuses %s (%s), and cannot read it either (%s): set config_exclusive: true to replace it"
                                  % (self.path, refused, last_line(rc, out, err)), **self.result)
        current = from_cli(self.cli.decode(args, out)["vars"])
        named = set(v.name for v in desired)
        unvouched = [v.name for v in current if v.name not in named]
        if unvouched:
            self.module.fail_json(msg="subhost refuses %s (%s), and it sets %s, which the playbook does not: the module will not "
                                  "carry them from a file others could have written into one subhost trusts; set them in config, "
                                  "or set config_exclusive: true to drop them, or check the file and fix its owner and mode by hand"
                                  % (self.path, refused, ", ".join(unvouched)), **self.result)
        return current

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

    def out_of_date(self, st):
        """Whether the running subhost runs with another pipeline, home or
        config than the one asked for. The config is compared with the one
        it was brought up with (status's "config"), not with what this run
        changed: a restart left pending by an earlier run (without
        restart_on_change, or whose stop failed after the config was
        written) is still due."""
        if st.get("home", self.home) != self.home or st.get("pipeline", self.p["pipeline"]) != self.p["pipeline"]:
            return True
        booted = st.get("config")
        if booted is None:
            # A subhost too old to report it: only this run's change is known.
            return self.result["config_changed"]
        if self.want is None:
            return False
        # DISKS and BRIDGES taken from the environment at boot are not the
        # file's (`subhost config` does not apply them either).
        running = dict((n, v) for n, v in (booted.get("vars") or {}).items() if v.get("origin") != "environment")
        return not same(from_cli(running), self.want)

    def converge_state(self):
        st = self.status()
        state = st.get("state", "stopped")
        if self.p["state"] == "stopped":
            if state != "stopped":
                self.stop()
            return
        if state in UP:
            if not self.out_of_date(st):
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
    # subhost accepts bytes that are not UTF-8 in a config's comments, as
    # bash does (an old config's Latin-1): the diff shows them replaced.
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def read_private(path):
    """A config's bytes, read without following a symlink or blocking on a
    FIFO; ValueError when it is not a regular file or is too large."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = f.read(MAX_CONFIG + 1)
    if len(data) > MAX_CONFIG:
        raise ValueError("larger than %d bytes" % MAX_CONFIG)
    return data


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
