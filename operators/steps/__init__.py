"""Stand-ins for the workflows' own steps: real work, proportional to each step's declared size.

When a workflow DAG enacts its plan (docs/enactment.md), every step of every enacted case,
region or stream runs one of these functions. Each does real numeric work on data that ships
with the installed packages (scikit-learn's bundled digits and breast-cancer data sets) or is
generated from a seed, never a sleep and never a download: ``items = ceil(work * scale)``
(``work`` is the step's declared GFLOP, ``scale`` the stand-in items per GFLOP), each item a
fixed piece of work of the step's kind (a slice segmented, a model fitted, a block of tokens
drafted), so a step's real work grows with its declared size as the plan's predicted duration
(work / speed) does; what an item costs differs by kind, as real hardware's speed does. Outputs are small JSON-able
dicts that flow to the next step (a case's report quotes its own classifier's result).

Each workflow's stand-ins live in a module of their own (``medical``, ``traffic``, ``speech``).
``WORKFLOW_STEPS`` (standard library only: DAG files read it at parse time) gives each
scenario's steps and, per step, the steps of the same unit it takes inputs from. Edges between
units (a traffic forecaster reading its neighbours' sensors) are not enacted.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from apportion.operators.steps import medical, speech, traffic

WORKFLOW_STEPS: dict[str, dict[str, tuple[str, ...]]] = {
    "medical_diagnosis": {
        "dicom_prep": (), "ct_seg": ("dicom_prep",), "lesion_cls": ("ct_seg",), "notes_nlp": (), "lab_model": (),
        "fusion": ("ct_seg", "lesion_cls", "notes_nlp", "lab_model"), "report": ("fusion",),
    },
    "traffic_prediction": {
        "ingest": (), "detect": (), "forecast": ("ingest", "detect"), "route": ("forecast",),
        "signal": ("forecast", "detect"),
    },
    "multimodal_speech": {
        "capture": (), "audio_frontend": ("capture",), "video_frontend": ("capture",), "asr": ("audio_frontend",),
        "lipread": ("video_frontend",), "av_fusion": ("asr", "lipread"), "nlu": ("av_fusion",),
    },
}

# Stand-in items per declared GFLOP each workflow DAG enacts with by default: a demo of three
# units stays within seconds of work per step (the segmentation, detector and ASR dominate).
DEFAULT_SCALE = {"medical_diagnosis": 1e-3, "traffic_prediction": 0.02, "multimodal_speech": 0.5}


def items_for(work: float, scale: float) -> int:
    """Stand-in items for a step of ``work`` GFLOP: ``ceil(work * scale)``, at least one."""
    if not (math.isfinite(work) and work >= 0):
        raise ValueError(f"work must be a finite number >= 0, got {work!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return max(1, math.ceil(work * scale))


StandIn = Callable[[int, int, Mapping[str, dict]], dict]

# What the stand-ins import: loaded before a step's clock starts, so that a fresh task process's
# imports count as the executor's overhead, not as the step's work.
LIBRARIES = ("numpy", "scipy.ndimage", "scipy.fft", "scipy.sparse.csgraph", "sklearn.datasets",
             "sklearn.linear_model", "sklearn.preprocessing", "sklearn.neighbors", "sklearn.feature_extraction.text")


def load_libraries() -> None:
    """Import what the stand-ins use (``LIBRARIES``)."""
    import importlib

    for name in LIBRARIES:
        importlib.import_module(name)

STAND_INS: dict[str, dict[str, StandIn]] = {
    scenario: {step: getattr(module, step) for step in WORKFLOW_STEPS[scenario]}
    for scenario, module in (("medical_diagnosis", medical), ("traffic_prediction", traffic),
                             ("multimodal_speech", speech))
}


def run_stand_in(scenario: str, step: str, *, work: float, scale: float, seed: int,
                 inputs: Mapping[str, dict] | None = None) -> dict[str, Any]:
    """Run ``step`` of ``scenario`` for a declared ``work`` (GFLOP) at ``scale`` items per
    GFLOP, seeded; ``inputs`` are its upstream steps' outputs (step -> output). Returns the
    step's output with ``items`` added."""
    try:
        function = STAND_INS[scenario][step]
    except KeyError:
        raise ValueError(f"no stand-in for step {step!r} of {scenario!r}; known: "
                         f"{ {s: sorted(f) for s, f in STAND_INS.items()} }") from None
    items = items_for(work, scale)
    missing = sorted(set(WORKFLOW_STEPS[scenario][step]) - set(inputs or {}))
    if missing:
        raise ValueError(f"step {step!r} needs the outputs of {missing}")
    return {**function(items, seed, inputs or {}), "items": items}
