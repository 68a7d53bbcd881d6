# -*- coding: utf-8 -*-
# Copyright: the subhost authors
# License: as the subhost project's (none chosen yet)
"""Render a subhost's bash config from variables, as subhost's parser reads it.

subhost parses its config (bash syntax) and never runs it; it accepts
assignments of literal words, quoted strings and arrays. Every word written
here is a literal, left bare when it holds only characters no shell treats
specially, otherwise in single quotes (a single quote inside becomes
'"'"'). Inside single quotes nothing is special, so
spaces, quotes, '$', backslashes, globs, '~' and '!' all read back as
written. ('=' is quoted too: a bare "=" in an array is not a word to
bash's grammar.) A newline or NUL cannot be carried: a config is read line by line
by people and tools, and bash cannot hold a NUL at all.

Stdlib only, so that tests can load this file outside Ansible.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

HEADER = (
    "# subhost config of %s, written by Ansible (subhost.subhost.subhost).\n"
    "# subhost parses it and never runs it; edits made here by hand are\n"
    "# replaced at the next run for the variables the playbook sets.\n"
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BARE = re.compile(r"^[A-Za-z0-9_@%+:,./-]+$")


class ConfigError(ValueError):
    """A config the module cannot write, with a message that names the variable."""


class Var(object):
    """One variable: its words, and whether it is an array."""

    __slots__ = ("name", "words", "is_array")

    def __init__(self, name, words, is_array):
        self.name = name
        self.words = list(words)
        self.is_array = bool(is_array)

    def key(self):
        return (self.is_array, tuple(self.words))

    def __eq__(self, other):
        return isinstance(other, Var) and self.name == other.name and self.key() == other.key()

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Var(%r, %r, %r)" % (self.name, self.words, self.is_array)


def _word(name, value, where):
    # bool before int: True is an int in Python, and YAML's yes/no/true
    # would silently become "True".
    if isinstance(value, bool) or value is None:
        raise ConfigError("config %s%s: %r is not a string (quote it in the playbook)" % (name, where, value))
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError("config %s%s: a %s is not a string" % (name, where, type(value).__name__))
    if "\n" in value:
        raise ConfigError("config %s%s: the value holds a newline, which a subhost config cannot carry" % (name, where))
    if "\x00" in value:
        raise ConfigError("config %s%s: the value holds a NUL byte, which a subhost config cannot carry" % (name, where))
    return value


def normalize(config):
    """Check a dict of variables (strings, or lists of strings for arrays)
    and return them as Vars, in the dict's order. Raises ConfigError."""
    if not isinstance(config, dict):
        raise ConfigError("config must be a dict of variables, not a %s" % type(config).__name__)
    out = []
    for name, value in config.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError("config variable name %r: want letters, digits and '_', not starting with a digit" % (name,))
        if name == "IFS":
            raise ConfigError("config IFS: subhost refuses to set IFS, which would change how bash splits words")
        if isinstance(value, (list, tuple)):
            words = [_word(name, w, "[%d]" % i) for i, w in enumerate(value)]
            out.append(Var(name, words, True))
        else:
            out.append(Var(name, [_word(name, value, "")], False))
    return out


def from_cli(vars_json):
    """Vars from `subhost config --json`'s "vars", in the order the file set
    them (by the line of each one's last assignment)."""
    def line(item):
        origin = item[1].get("origin") or ""
        try:
            return int(origin.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            return 0
    ordered = sorted((vars_json or {}).items(), key=lambda kv: (line(kv), kv[0]))
    return [Var(n, v.get("words") or [], v.get("is_array", False)) for n, v in ordered]


def merge(current, desired, exclusive):
    """The variables the file should hold: the desired ones, plus (unless
    exclusive) the current ones the playbook does not name. Variables keep
    their place in the file; new ones follow in the playbook's order."""
    want = dict((v.name, v) for v in desired)
    out = []
    for v in current:
        if v.name in want:
            out.append(want.pop(v.name))
        elif not exclusive:
            out.append(v)
    out.extend(v for v in desired if v.name in want)
    return out


def same(a, b):
    """Whether two lists of Vars set the same variables to the same values
    (order aside: the parser's result does not depend on it)."""
    return dict((v.name, v.key()) for v in a) == dict((v.name, v.key()) for v in b)


def quote(word):
    """One word as bash (and subhost's parser) reads it back."""
    if _BARE.match(word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


def render(name, variables):
    """The config file's text."""
    lines = [HEADER % name]
    for v in variables:
        if v.is_array:
            inner = " ".join(quote(w) for w in v.words)
            lines.append("%s=( %s )\n" % (v.name, inner) if inner else "%s=()\n" % v.name)
        else:
            lines.append("%s=%s\n" % (v.name, quote(v.words[0] if v.words else "")))
    return "".join(lines)
