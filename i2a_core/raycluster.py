"""What a job must know about the Ray cluster it joined: outputs every node can reach, and what it waits for."""

from __future__ import annotations

from i2a_core.errors import ClusterError
from i2a_core.io import storage


def require_shared_output(output: str, flag: str = "--output") -> None:
    """Refuse a local output path when the cluster spans several hosts: parts would scatter over their disks."""
    import ray

    if storage.is_remote(output):
        return
    hosts = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}
    if len(hosts) > 1:
        raise ClusterError(f"{flag} {output}: a local path, but the Ray cluster spans {len(hosts)} hosts; "
                           f"use an s3:// URL so that every node writes to the same place")


def waiting_for(demand: dict[str, float], held_by_us: bool = False) -> str:
    """One line saying what work asking for `demand` (per task or trial, e.g. {"CPU": 1, "GPU": 1}) waits for on
    the cluster this process joined: "waiting for 1 GPU; no alive node has one". '' when an alive node has
    it free now (then the wait is elsewhere)."""
    import ray

    alive = [node for node in ray.nodes() if node["Alive"]]
    totals = [dict(node["Resources"]) for node in alive]
    try:  # per node (a Ray developer API); else the cluster's sum, which cannot see fragmentation
        from ray._private.state import available_resources_per_node

        by_id = available_resources_per_node()
        free = [dict(by_id.get(node["NodeID"], {})) for node in alive]
    except (ImportError, AttributeError, RuntimeError):
        free = [dict(ray.available_resources())]
    # held_by_us: the job's own workers hold what they asked for, so only a cluster that can never host the
    # demand is worth a word (resources "in use" would be our own).
    return describe_wait(demand, totals, totals if held_by_us else free)


def describe_wait(demand: dict[str, float], totals: list[dict], free: list[dict]) -> str:
    """waiting_for's wording, from each alive node's total and free resources (testable without Ray)."""
    needed = {name: amount for name, amount in demand.items() if amount > 0}
    if not needed:
        return ""
    if not totals:
        return f"waiting for {_amounts(needed)}; no node is alive"
    if not any(_fits(node, needed) for node in totals):
        for name, amount in needed.items():
            most = max(node.get(name, 0) for node in totals)
            if most == 0:
                return f"waiting for {_amount(amount, name)}; no alive node has {'one' if amount <= 1 else 'any'}"
            if most < amount:
                return (f"waiting for {_amount(amount, name)} on one node; "
                        f"the largest alive node has {_amount(most, name)}")
        return f"waiting for a node with {_amounts(needed)}; no alive node has all of them"
    if any(_fits(node, needed) for node in free):
        return ""
    busy = [name for name, amount in needed.items() if not any(node.get(name, 0) >= amount for node in free)]
    name = (busy or list(needed))[0]
    in_use = sum(node.get(name, 0) for node in totals) - sum(node.get(name, 0) for node in free)
    return (f"waiting for {_amount(needed[name], name)}; {_amount(in_use, name)} of "
            f"{sum(node.get(name, 0) for node in totals):g} on the alive nodes are in use")


def _fits(resources: dict, needed: dict[str, float]) -> bool:
    return all(resources.get(name, 0) >= amount for name, amount in needed.items())


def _amount(amount: float, name: str) -> str:
    plural = "s" if name in ("CPU", "GPU") and amount != 1 else ""
    return f"{amount:g} {name}{plural}"


def _amounts(needed: dict[str, float]) -> str:
    return " and ".join(_amount(amount, name) for name, amount in needed.items())
