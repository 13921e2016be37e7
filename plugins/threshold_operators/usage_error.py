"""``UsageError``: a mistake the user can fix (a bad argument, an unknown rule, a bad CSV).

The ``storefence`` command prints its one line and exits with status 2. It lives in a module of
its own so that code run under ``python -m threshold_operators.cli`` raises the same class the
command catches.
"""


class UsageError(Exception):
    pass
