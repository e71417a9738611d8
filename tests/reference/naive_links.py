"""Plain-Python reference for the link tables of ``Instance.build``: every pair of nodes looked
up one at a time (node pair beats zone pair beats the cluster default)."""

from __future__ import annotations

import math


def naive_link_tables(cluster):
    """(latency, inverse bandwidth) as lists of lists, 0 on the diagonal, inf with no link."""
    node_ids = {nd.id for nd in cluster.nodes}
    zones = {nd.zone for nd in cluster.nodes}
    node_links, zone_links = {}, {}
    for ln in cluster.links:
        table = node_links if ln.a in node_ids and ln.b in node_ids else zone_links if ln.a in zones else None
        if table is not None:
            table[(ln.a, ln.b)] = table[(ln.b, ln.a)] = ln
    default_bw = cluster.default_bandwidth or 0.0
    nodes = cluster.nodes
    latency = [[0.0] * len(nodes) for _ in nodes]
    inv_bw = [[0.0] * len(nodes) for _ in nodes]
    for a, na in enumerate(nodes):
        for b, nb in enumerate(nodes):
            if a == b:
                continue
            ln = node_links.get((na.id, nb.id)) or zone_links.get((na.zone, nb.zone))
            bw, lat = (ln.bandwidth, ln.latency) if ln else (default_bw, cluster.default_latency)
            latency[a][b] = lat
            inv_bw[a][b] = math.inf if bw == 0 else 1.0 / bw
    return latency, inv_bw
