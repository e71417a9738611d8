"""Scenario library: realistic workloads and clusters for three AI workflows.

``build(name, size=..., nodes=..., seed=...)`` returns a ``(Workload, Cluster)`` pair that
``core.model.Instance.build`` accepts for any size >= 1 and any node count >= 1. The numbers
behind the generators, with their sources, are in ``core.scenarios.profiles`` and
docs/scenarios.md.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from apportion.core.errors import SpecError
from apportion.core.model import Cluster, Workload
from apportion.core.scenarios._validate import count
from apportion.core.scenarios.medical import TASKS_PER_CASE, medical_diagnosis
from apportion.core.scenarios.speech import TASKS_PER_STREAM, multimodal_speech
from apportion.core.scenarios.traffic import TASKS_PER_REGION, traffic_prediction


@dataclass(frozen=True)
class Scenario:
    description: str
    unit: str  # what ``size`` counts
    default_size: int
    default_nodes: int
    tasks_per_unit: int
    generator: Callable[..., tuple[Workload, Cluster]]
    uses_logical_date: bool = False


SCENARIOS: dict[str, Scenario] = {
    "medical_diagnosis": Scenario(
        "Patient cases: CT preprocessing, 3D segmentation, lesion classifier, notes NLP and lab "
        "model in the hospital zone; fusion and LLM report anywhere. Urgent cases have deadlines.",
        unit="cases", default_size=100, default_nodes=16, tasks_per_unit=TASKS_PER_CASE,
        generator=medical_diagnosis,
    ),
    "traffic_prediction": Scenario(
        "City regions on a grid: edge sensor ingest and camera detection, a graph forecaster "
        "reading neighbouring regions, route planning and signal control; load follows the time of day.",
        unit="regions", default_size=36, default_nodes=16, tasks_per_unit=TASKS_PER_REGION,
        generator=traffic_prediction, uses_logical_date=True,
    ),
    "multimodal_speech": Scenario(
        "Audio-video streams: capture at the site, audio and lip front ends, Whisper-class ASR, "
        "AV-HuBERT-class lip reading, fusion and BERT-class understanding.",
        unit="streams", default_size=50, default_nodes=16, tasks_per_unit=TASKS_PER_STREAM,
        generator=multimodal_speech,
    ),
}


def build(name: str, *, size: int | None = None, nodes: int | None = None, seed: int = 0,
          logical_date=None, **options) -> tuple[Workload, Cluster]:
    """Generate scenario ``name``; ``None`` sizes take the scenario's defaults.

    ``logical_date`` drives the time-of-day load of time-dependent scenarios and is ignored by
    the others (so a scheduler can pass it to every scenario). ``options`` are the generator's
    keyword options (e.g. ``urgent_share`` for medical_diagnosis). Same arguments, same result.
    """
    if name not in SCENARIOS:
        raise SpecError("scenario", f"unknown scenario {name!r}; known: {sorted(SCENARIOS)}")
    sc = SCENARIOS[name]
    size = count("size", sc.default_size if size is None else size)
    nodes = count("nodes", sc.default_nodes if nodes is None else nodes)
    seed = count("seed", seed, minimum=0)
    known = [p.name for p in inspect.signature(sc.generator).parameters.values()
             if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in options:
        if key not in known:
            raise SpecError(f"options.{key}", f"unknown option for {name}; known: {known}")
    if sc.uses_logical_date:
        options["logical_date"] = logical_date
    return sc.generator(size, nodes, seed, **options)


__all__ = ["SCENARIOS", "Scenario", "build", "medical_diagnosis", "multimodal_speech", "traffic_prediction"]
