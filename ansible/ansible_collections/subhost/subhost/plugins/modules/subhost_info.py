#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the subhost authors
# License: as the subhost project's (none chosen yet)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: subhost_info
short_description: The subhosts a host knows of
description:
  - Returns C(subhost list --json) as C(subhosts), every subhost with a state on the host, running or not.
  - A subhost whose state subhost cannot read (a damaged or newer C(state.json)) is left out of C(subhosts) and named
    in a warning; the others are returned all the same.
version_added: "0.1.0"
author:
  - the subhost authors
options:
  name:
    description:
      - Only this subhost (an empty list when the host does not know it).
    type: str
extends_documentation_fragment:
  - subhost.subhost.subhost
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: what runs where
  subhost.subhost.subhost_info:
  register: info

- name: the running ones
  ansible.builtin.debug:
    msg: "{{ info.subhosts | selectattr('state', 'equalto', 'running') | map(attribute='name') | list }}"
'''

RETURN = r'''
subhosts:
  description:
    - One entry per subhost, as C(subhost list --json) gives it; C(state) is one of C(booting), C(running),
      C(hibernating), C(stopping), C(stopped), C(failed).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "web1", "pipeline": "pretend-boot", "state": "running", "pid": 4242, "home": "/opt/sub/web1"}]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.subhost.subhost.plugins.module_utils.subhost_cli import ARGUMENT_SPEC, Subhost


def main():
    spec = dict(name=dict(type="str"))
    spec.update(ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    # A state.json that subhost cannot read is a warning (and that subhost
    # is missing from the list), not a failure hiding every other one.
    subhosts, _ = Subhost(module).json_list(["list", "--json"])
    if module.params["name"]:
        subhosts = [s for s in subhosts if s.get("name") == module.params["name"]]
    module.exit_json(changed=False, subhosts=subhosts)


if __name__ == "__main__":
    main()
