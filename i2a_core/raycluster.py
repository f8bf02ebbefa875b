"""What a job must check about the Ray cluster it joined: outputs every node can reach."""

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
