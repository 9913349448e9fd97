"""python -m hil.lab.agent serve PORT   (PORT a serial device, or @FILE: wait for FILE to name it)
python -m hil.lab.agent info          (print this host's capabilities as JSON)"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hil.lab.agent.service import Agent, host_info


def wait_for_port(name_file: Path, poll_s: float = 0.01) -> str:
    """L1's init starts the agent before the modules are loaded and writes the port's name
    (renamed into place: never seen half-written) once they are."""
    while True:
        try:
            return name_file.read_text().strip()
        except FileNotFoundError:
            time.sleep(poll_s)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "serve":
        Agent().serve(wait_for_port(Path(argv[1][1:])) if argv[1].startswith("@") else argv[1])
        return 0
    if argv == ["info"]:
        print(json.dumps(host_info(), indent=2))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
