# -*- coding: utf-8 -*-
# Copyright: the subhost authors
# License: as the subhost project's (none chosen yet)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # What every module of the collection shares: how it finds subhost.
    DOCUMENTATION = r'''
options:
  subhost_bin:
    description:
      - The C(subhost) executable to run.
      - By default C(subhost) is looked up on C(PATH) (and in C(/usr/local/bin), C(/usr/sbin)...).
    type: path
requirements:
  - subhost on the managed host, run as root (C(become) when the connection is not root's).
notes:
  - The modules run the C(subhost) CLI and read its C(--json) output; a CLI error fails the task with the CLI's own message.
'''
