"""python -m hil.lab.agent serve PORT   (in L1: PORT is /dev/ttyS1)
python -m hil.lab.agent info          (print this host's capabilities as JSON)"""
from __future__ import annotations

import json
import sys

from hil.lab.agent.service import Agent, host_info


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "serve":
        Agent().serve(argv[1])
        return 0
    if argv == ["info"]:
        print(json.dumps(host_info(), indent=2))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
