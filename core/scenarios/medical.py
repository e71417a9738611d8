"""Intelligent medical diagnosis (background article, 8.2): one request per patient case.

Per case (7 tasks, ids ``c{i}.{step}``):

    dicom_prep -> ct_seg -> lesion_cls -> fusion -> report
                  ct_seg ------------------> fusion
    notes_nlp ------------------------------> fusion
    lab_model ------------------------------> fusion

Patient data stays in the ``hospital`` zone until it has become de-identified features: the
preprocessing, segmentation, lesion classifier, notes NLP and lab model are pinned there; fusion
and the report (which see only features) may run anywhere. The CNNs are GPU-only.
"""

from __future__ import annotations

import math

import numpy as np

from apportion.core.model import Cluster, Edge, Request, Task, Workload
from apportion.core.scenarios import profiles as P
from apportion.core.scenarios._validate import count, number
from apportion.core.scenarios.clusters import hospital_cluster

TASKS_PER_CASE = 7
HOSPITAL = ("hospital",)
GPU = ("gpu",)
URGENT_PRIORITY = 3.0
ROUTINE_PRIORITY = 1.0


def _patches(extent: int, patch: int) -> int:
    """Sliding-window positions along one axis with nnU-Net's 50% overlap."""
    if extent <= patch:
        return 1
    return math.ceil((extent - patch) / (patch * P.NNUNET_STEP)) + 1


def medical_diagnosis(cases: int, nodes: int, seed: int, *, urgent_share: float = 0.1,
                      window: float = 3600.0, urgent_deadline: float = 900.0) -> tuple[Workload, Cluster]:
    """A batch of ``cases`` patient cases arriving over ``window`` seconds on a hospital cluster.

    :param urgent_share: probability that a case is urgent (priority 3, a deadline).
    :param window: cases are released uniformly at random over [0, window) seconds.
    :param urgent_deadline: an urgent case must finish within this many seconds of release.
    """
    count("cases", cases)
    urgent_share = number("urgent_share", urgent_share, high=1.0)
    window = number("window", window)
    urgent_deadline = number("urgent_deadline", urgent_deadline, strict=True)
    cluster = hospital_cluster(nodes)
    rng = np.random.default_rng(seed)

    release = np.sort(rng.uniform(0.0, window, cases)) if window > 0 else np.zeros(cases)
    urgent = rng.random(cases) < urgent_share
    series_mb = rng.uniform(100.0, 500.0, cases)  # the 100-500 MB CT series
    lesions = 1 + rng.poisson(2.0, cases)  # assumption: 1 + Poisson(2) candidate lesions
    notes = 1 + rng.poisson(5.0, cases)  # assumption: 1 + Poisson(5) 512-token note chunks
    lab_rows = rng.integers(100, 2001, cases)  # assumption: 100-2,000 lab results per patient
    prompt_tokens = rng.integers(1024, 2049, cases)  # assumption: findings + history prompt
    report_tokens = rng.integers(300, 601, cases)  # assumption: a 300-600 token draft report

    bert_doc = P.transformer_gflop(P.bert_base_nonembedding_params(), P.BERT_MAX_TOKENS,
                                   layers=12, context=P.BERT_MAX_TOKENS, width=768)
    # Fusion: assumption, a 4-layer width-512 transformer (12 d^2 per layer) over 256 tokens.
    fusion_gflop = P.transformer_gflop(4 * 12 * 512.0 ** 2, 256)
    px, py, pz = P.NNUNET_PATCH

    tasks: list[Task] = []
    edges: list[Edge] = []
    requests: list[Request] = []
    for i in range(cases):
        rid = f"c{i}"
        priority = URGENT_PRIORITY if urgent[i] else ROUTINE_PRIORITY
        deadline = float(release[i] + urgent_deadline) if urgent[i] else None
        requests.append(Request(id=rid, release=float(release[i]), deadline=deadline, priority=priority))
        slices = int(round(series_mb[i] / P.CT_SLICE_MB))
        voxels = 512 * 512 * slices
        volume_mb = voxels * 4 / 1e6  # float32 after preprocessing
        patches = _patches(512, px) * _patches(512, py) * _patches(slices, pz)
        seg_gflop = patches * P.NNUNET_MIRRORS * P.NNUNET_GFLOP_PER_PATCH
        crops = 16 * int(lesions[i])  # assumption: 16 2.5D crops per lesion
        crops_mb = crops * 224 * 224 * 4 / 1e6

        def task(step, work, kind, memory, *, kinds=None, zones=None):
            tasks.append(Task(id=f"{rid}.{step}", work=float(work), kind=kind, memory=float(memory),
                              priority=priority, request=rid, allowed_kinds=kinds, allowed_zones=zones))

        def edge(a, b, mb):
            edges.append(Edge(f"{rid}.{a}", f"{rid}.{b}", float(mb)))

        task("dicom_prep", voxels * P.DICOM_OPS_PER_VOXEL / 1e9, "etl",
             2.0 * volume_mb / 1e3 + 1.0, zones=HOSPITAL)
        task("ct_seg", seg_gflop, "cnn", P.NNUNET_MEMORY, kinds=GPU, zones=HOSPITAL)
        task("lesion_cls", crops * P.RESNET50_GFLOP, "cnn", P.RESNET50_MEMORY, kinds=GPU, zones=HOSPITAL)
        task("notes_nlp", notes[i] * bert_doc, "transformer", P.BERT_MEMORY, zones=HOSPITAL)
        task("lab_model", lab_rows[i] * P.GBM_TREES * P.GBM_DEPTH * P.GBM_OPS_PER_VISIT / 1e9, "tabular",
             0.5, zones=HOSPITAL)  # assumption: 0.5 GB for the model and the patient's table
        task("fusion", fusion_gflop, "transformer", 1.0)  # assumption: 1 GB
        task("report", 2.0 * P.REPORT_LLM_PARAMS * (prompt_tokens[i] + report_tokens[i]) / 1e9, "llm",
             P.REPORT_LLM_MEMORY)

        edge("dicom_prep", "ct_seg", volume_mb)
        edge("ct_seg", "lesion_cls", crops_mb)
        # De-identified features leaving the hospital tasks (derived sizes):
        edge("ct_seg", "fusion", 128 ** 3 / 1e6)  # 128^3 uint8 downsampled label map, 2.1 MB
        edge("lesion_cls", "fusion", lesions[i] * 2048 * 4 / 1e6)  # ResNet-50 2048-d embeddings
        edge("notes_nlp", "fusion", notes[i] * 768 * 4 / 1e6 + 0.05)  # pooled 768-d + 50 kB entities
        edge("lab_model", "fusion", 0.01)  # scores and a few hundred features
        edge("fusion", "report", 0.05)  # structured findings (JSON)

    workload = Workload(tasks=tuple(tasks), edges=tuple(edges), requests=tuple(requests),
                        name=f"medical_diagnosis-{cases}-s{seed}")
    return workload, cluster
