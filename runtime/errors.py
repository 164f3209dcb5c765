"""The one base class of the errors a user can act on.

Every stage raises a subclass of `StyleganError` for bad input or a missing capability (a corrupt
file, an out-of-range option, a module or GPU that is not there). Its message is one line naming
the file, field or option; the command line catches this class once and prints `error: ...` with
exit code 1. Anything else is a bug and keeps its traceback. Subclasses keep a builtin base too
(ValueError, RuntimeError, OSError) so that callers that caught those still do.
"""

from __future__ import annotations


class StyleganError(Exception):
    """Bad input or a missing capability; the message is one line."""
