"""`OptionError`: how every part of `nestdsl.optim` rejects a bad option.

It is a `ValueError` for Python callers and also names the option that was wrong, so the
trainer's configuration check can give it an error code without re-checking anything.
"""

from __future__ import annotations


class OptionError(ValueError):
    """A rejected strategy option.

    `field` names the option (``strategy``, ``priority``, ``importances``, ``task_weights``,
    ``norm_constant``, ``dims``); `message` and `help` are the diagnostic's words; ``str()``
    is the Python-facing text, which may phrase the same facts for a traceback reader.
    """

    def __init__(self, field: str, message: str, help: str | None = None, text: str = "") -> None:
        super().__init__(text or (f"{message} ({help})" if help else message))
        self.field = field
        self.message = message
        self.help = help
