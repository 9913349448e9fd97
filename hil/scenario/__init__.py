"""Validated YAML configs: topologies and scenarios, every mistake named by file, line and key."""
from hil.scenario.errors import ConfigError
from hil.scenario.loader import apply_override, find_config, list_scenarios, load_scenario, load_topology
from hil.scenario.config import Expect, L1Config, L2Config, ProbeOp, Scenario, Topology, Workload

__all__ = ["ConfigError", "Expect", "L1Config", "L2Config", "ProbeOp", "Scenario", "Topology", "Workload",
           "apply_override", "find_config", "list_scenarios", "load_scenario", "load_topology"]
