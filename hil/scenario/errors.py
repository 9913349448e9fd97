"""Config mistakes, always reported as FILE:LINE: KEY: what is wrong."""
from __future__ import annotations

import re

# Text from the config (a key, a --set string, a file name) is echoed into one terminal line:
# control characters are escaped (no line or escape-sequence injection) and the length capped.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
MAX_ECHO = 160
MAX_MESSAGE = 1000     # a message quoting a huge value (a 5000-digit number, a long list) stays readable


def printable(text: str, limit: int = MAX_ECHO) -> str:
    shown = _CONTROL.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"


class ConfigError(ValueError):
    def __init__(self, file: str, line: int | None, key: str, message: str):
        self.file, self.line, self.key, self.message = file, line, key, message
        msg = _CONTROL.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii")
                           if m.group() not in "\n\t" else m.group(), message)
        if len(msg) > MAX_MESSAGE:
            msg = f"{msg[:MAX_MESSAGE]}... ({len(message)} characters)"
        if file == "--set":   # an override has no file or line: name the override itself
            super().__init__(f"--set {printable(key)}: {msg}")
            return
        name = printable(file) if file else "''"
        where = f"{name}:{line}" if line is not None else name
        super().__init__(f"{where}: {printable(key) if key else '<top>'}: {msg}")
