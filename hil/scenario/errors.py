"""Config mistakes, always reported as FILE:LINE: KEY: what is wrong."""
from __future__ import annotations


class ConfigError(ValueError):
    def __init__(self, file: str, line: int | None, key: str, message: str):
        self.file, self.line, self.key, self.message = file, line, key, message
        if file == "--set":   # an override has no file or line: name the override itself
            super().__init__(f"--set {key}: {message}")
            return
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {key or '<top>'}: {message}")
