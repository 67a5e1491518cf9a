"""``shadow demo``: the whole flow on embedded defaults (see :mod:`shadow.demo.flow`).

On top of the tree with :mod:`shadow.cli`: nothing else imports it.
"""

from __future__ import annotations
