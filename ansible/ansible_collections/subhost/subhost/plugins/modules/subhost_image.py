#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the subhost authors
# License: as the subhost project's (none chosen yet)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: subhost_image
short_description: Build a subhost disk image from a directory
description:
  - Runs C(subhost image build) when the image does not exist (or C(force=true)), making a sparse raw disk image whose
    partition 1 (or, with C(table=none), the whole image) is an ext4 filesystem populated from C(src).
  - An existing image is left alone, its content not compared with C(src).
  - Supports check mode.
version_added: "0.1.0"
author:
  - the subhost authors
options:
  image:
    description:
      - The image file to make.
    type: path
    required: true
  src:
    description:
      - The directory whose tree becomes the filesystem (C(subhost image build --from)).
    type: path
    required: true
    aliases: [from]
  size:
    description:
      - The image's size, for example C(2G) or C(512M).
    type: str
    required: true
  table:
    description:
      - C(mbr) or C(gpt) put the filesystem in partition 1 (use it as C(vda:1:IMAGE) in C(DISKS)); C(none) makes a bare
        filesystem (C(vda:0:IMAGE)).
    type: str
    choices: [mbr, gpt, none]
    default: mbr
  force:
    description:
      - Build the image again even when it exists, replacing it.
    type: bool
    default: false
extends_documentation_fragment:
  - subhost.subhost.subhost
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: web1's disk image, built once
  subhost.subhost.subhost_image:
    image: /disks/web1.raw
    src: /srv/rootfs/web1
    size: 2G
'''

RETURN = r'''
image:
  description: The image file.
  returned: always
  type: str
  sample: /disks/web1.raw
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.subhost.subhost.plugins.module_utils.subhost_cli import ARGUMENT_SPEC, Subhost


def main():
    spec = dict(
        image=dict(type="path", required=True),
        src=dict(type="path", required=True, aliases=["from"]),
        size=dict(type="str", required=True),
        table=dict(type="str", default="mbr", choices=["mbr", "gpt", "none"]),
        force=dict(type="bool", default=False),
    )
    spec.update(ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    cli = Subhost(module)
    if os.path.lexists(p["image"]) and not p["force"]:
        module.exit_json(changed=False, image=p["image"])
    if not module.check_mode:
        args = ["image", "build", "--from", p["src"], "--size", p["size"], "--table", p["table"]]
        if p["force"]:
            args.append("--force")
        cli.run(args + [p["image"]])
    module.exit_json(changed=True, image=p["image"])


if __name__ == "__main__":
    main()
