"""The one line between "your input is wrong" and "videosweep has a bug".

Every error a user can fix by changing what they gave (a manifest, an option, a folder, a
query) is an :class:`InputError`: the command line prints its message as one line and exits 2,
having done nothing. Anything else that escapes a command is a bug: the command line writes
the traceback to a log file and exits 1 with one line saying where that log is.
"""

from __future__ import annotations


class InputError(ValueError):
    """The input is wrong (manifest, option, output folder, query): the message says where and how to fix it."""
