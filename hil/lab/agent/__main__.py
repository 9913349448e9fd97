"""python -m hil.lab.agent serve PORT   (PORT: a device, or virtio:NAME, as L1's init says virtio:hil.agent)
python -m hil.lab.agent info          (print this host's capabilities as JSON)"""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "serve":
        # in a booting L1 the imports overlap init's module loading (hil/lab/agent/early.py)
        from hil.lab.agent.service import Agent
        from hil.lab.agent.early import adopt_boot_l2, agent_port, wait_for_modules
        wait_for_modules()
        Agent(adopt_boot_l2()).serve(agent_port(argv[1]))
        return 0
    if argv == ["info"]:
        from hil.lab.agent.service import host_info
        print(json.dumps(host_info(), indent=2))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
