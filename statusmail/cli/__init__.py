"""The ``statusmail`` command line (SPEC §6): one module per command group.

Thin by design: parse options, call one function, print. :mod:`.app` holds the group and
what every command shares; importing a group's module registers its commands on ``main``.
"""

from statusmail.cli import checkins, digest, follows, mail, posts, service, stats, users  # noqa: F401  (registration)
from statusmail.cli.app import main

__all__ = ["main"]
