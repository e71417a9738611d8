"""Cluster generators for the scenarios: a fixed mix of node types spread over zones.

Every generator takes the total node count and apportions it over *slots* (zone group,
hardware) by fixed weights with the largest-remainder method, after first giving each slot its
minimum. The minimums are what the scenario's placement rules need (a hospital GPU for the
GPU-only, hospital-only CNNs; an edge box for the edge-only tasks), so a cluster of any size
from 1 node up runs its scenario. Zone pairs are all linked, so every edge is routable.
"""

from __future__ import annotations

from dataclasses import dataclass

from apportion.core.errors import SpecError
from apportion.core.model import Cluster, Link, Node
from apportion.core.scenarios import profiles as P
from apportion.core.scenarios._validate import count


@dataclass(frozen=True)
class Slot:
    group: str  # zone, or the prefix of a replicated zone group ("district", "site")
    hardware: P.Hardware
    weight: float
    minimum: int = 0


def apportion(total: int, slots: tuple[Slot, ...]) -> list[int]:
    """Node count per slot: largest remainder of the weights, then minimums topped up.

    A slot below its minimum takes a node from the slot with the most nodes above its own
    minimum (the later slot on ties). Deterministic: the result depends on ``total`` only.
    """
    need = sum(s.minimum for s in slots)
    if total < need:
        raise SpecError("nodes", f"must be >= {need} for this scenario's placement rules, got {total}")
    weight_sum = sum(s.weight for s in slots)
    quotas = [total * s.weight / weight_sum for s in slots]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(slots)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    for i, s in enumerate(slots):
        while counts[i] < s.minimum:
            donor = max(range(len(slots)), key=lambda j: (counts[j] - slots[j].minimum, j))
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _node(zone: str, hw: P.Hardware, k: int) -> Node:
    return Node(
        id=f"{zone}/{hw.name}-{k}", kind=hw.kind, speed=P.effective_speed(hw), memory=hw.memory,
        zone=zone, busy_power=hw.busy_power, idle_power=hw.idle_power, cost_per_hour=hw.cost_per_hour,
    )


def _replicated_zones(group: str, n_boxes: int, boxes_per_zone: int) -> list[str]:
    return [f"{group}-{z}" for z in range(max(1, n_boxes // boxes_per_zone))]


def _build(nodes: int, slots: tuple[Slot, ...], *, replicated: dict[str, int], link, name: str) -> Cluster:
    """Lay out the apportioned nodes; ``replicated[group]`` = boxes per zone of that group.

    Boxes of a replicated group are dealt round-robin over its zones, interleaving hardware
    generations, so each zone gets at least one box.
    """
    count("nodes", nodes)
    counts = apportion(nodes, slots)
    out: list[Node] = []
    for group, per_zone in replicated.items():
        members = [(s.hardware, c) for s, c in zip(slots, counts, strict=True) if s.group == group]
        queues = [[hw] * c for hw, c in members]
        boxes = [q[i] for i in range(max((len(q) for q in queues), default=0)) for q in queues if i < len(q)]
        zones = _replicated_zones(group, len(boxes), per_zone)
        seen: dict[tuple[str, str], int] = {}
        for b, hw in enumerate(boxes):
            zone = zones[b % len(zones)]
            k = seen.get((zone, hw.name), 0)
            seen[(zone, hw.name)] = k + 1
            out.append(_node(zone, hw, k))
    for s, c in zip(slots, counts, strict=True):
        if s.group not in replicated:
            out.extend(_node(s.group, s.hardware, k) for k in range(c))
    zones = sorted({nd.zone for nd in out})
    links = tuple(Link(a, b, *link(a, b)) for i, a in enumerate(zones) for b in zones[i:])
    return Cluster(nodes=tuple(out), links=links, speed_factors=P.speed_factors(), name=f"{name}-{nodes}")


def _tier(zone: str) -> str:
    return zone.rsplit("-", 1)[0] if zone.startswith(("district-", "site-")) else zone


# Hospital: on-site A6000 servers and CPU servers; cloud A100s, T4s and CPU servers.
# Ratio at 16 nodes: 4 A6000, 3 hospital CPU, 2 A100, 4 T4, 3 cloud CPU.
HOSPITAL_SLOTS = (
    Slot("hospital", P.A6000, 4, minimum=1),
    Slot("hospital", P.CPU_SERVER, 3),
    Slot("cloud", P.A100, 2),
    Slot("cloud", P.T4, 4),
    Slot("cloud", P.CPU_SERVER, 3),
)


def _hospital_link(a: str, b: str) -> tuple[float, float]:
    if a == b:
        return P.LAN_10G if a == "hospital" else P.CLOUD_25G
    return P.WAN_1G


def hospital_cluster(nodes: int) -> Cluster:
    """Zones ``hospital`` (LAN 10 Gb/s) and ``cloud`` (25 Gb/s), joined by a 1 Gb/s, 20 ms WAN."""
    return _build(nodes, HOSPITAL_SLOTS, replicated={}, link=_hospital_link, name="hospital")


# City: edge boxes in district cabinets (2 per district), CPU servers in the metro data centre,
# GPUs and CPUs in the cloud. Ratio at 16 nodes: 6 Orin, 2 Xavier, 3 metro CPU, 1 A100, 2 T4,
# 2 cloud CPU -> 4 districts.
CITY_SLOTS = (
    Slot("district", P.ORIN, 6, minimum=1),
    Slot("district", P.XAVIER, 2),
    Slot("metro", P.CPU_SERVER, 3),
    Slot("cloud", P.A100, 1),
    Slot("cloud", P.T4, 2),
    Slot("cloud", P.CPU_SERVER, 2),
)
BOXES_PER_DISTRICT = 2


def _city_link(a: str, b: str) -> tuple[float, float]:
    ta, tb = sorted((_tier(a), _tier(b)))
    if a == b:
        return {"district": P.EDGE_LAN_1G, "metro": P.LAN_10G, "cloud": P.CLOUD_25G}[ta]
    if (ta, tb) == ("cloud", "metro"):
        return P.WAN_1G
    if "cloud" in (ta, tb):
        return P.EDGE_UPLINK_CLOUD
    # district-metro, and district-district through the metro data centre: both uplinks.
    return P.EDGE_UPLINK_METRO if "metro" in (ta, tb) else (P.EDGE_UPLINK_METRO[0], 2 * P.EDGE_UPLINK_METRO[1])


def city_cluster(nodes: int) -> Cluster:
    """Zones ``district-0..d-1`` (edge boxes, 100 Mb/s uplinks), ``metro`` and ``cloud``."""
    return _build(nodes, CITY_SLOTS, replicated={"district": BOXES_PER_DISTRICT}, link=_city_link, name="city")


# Speech: edge boxes at capture sites (meeting rooms / kiosks, 3 per site), GPUs and CPUs in the
# cloud. Ratio at 16 nodes: 4 Orin, 2 Xavier, 2 A100, 5 T4, 3 CPU -> 2 sites.
SPEECH_SLOTS = (
    Slot("site", P.ORIN, 4, minimum=1),
    Slot("site", P.XAVIER, 2),
    Slot("cloud", P.A100, 2),
    Slot("cloud", P.T4, 5),
    Slot("cloud", P.CPU_SERVER, 3),
)
BOXES_PER_SITE = 3


def _speech_link(a: str, b: str) -> tuple[float, float]:
    if a == b:
        return P.EDGE_LAN_1G if _tier(a) == "site" else P.CLOUD_25G
    return P.EDGE_UPLINK_CLOUD


def speech_cluster(nodes: int) -> Cluster:
    """Zones ``site-0..s-1`` (edge boxes, 100 Mb/s uplinks, 30 ms) and ``cloud``."""
    return _build(nodes, SPEECH_SLOTS, replicated={"site": BOXES_PER_SITE}, link=_speech_link, name="speech")


def zones_of(cluster: Cluster, group: str) -> list[str]:
    """The zones of a replicated group (``district-0``, ...) in numeric order."""
    zones = {nd.zone for nd in cluster.nodes if _tier(nd.zone) == group and nd.zone != group}
    return sorted(zones, key=lambda z: int(z.rsplit("-", 1)[1]))
