"""Multimodal speech recognition (background article, 8.1): one request per audio-video stream.

A stream is a recorded segment (a meeting-room or kiosk clip of 30-300 s) captured at a site.
Per stream ``s{i}`` (7 tasks):

    capture -> audio_frontend -> asr -----> av_fusion -> nlu
    capture -> video_frontend -> lipread -> av_fusion

``capture`` (demux, decode, face tracking, mouth crops) runs on an edge box of the stream's
site; everything else may run anywhere. Streams arrive over ``window`` seconds and must be
understood within their own duration after arrival (keep up with real time).
"""

from __future__ import annotations

import numpy as np

from apportion.core.model import Cluster, Edge, Request, Task, Workload
from apportion.core.scenarios import profiles as P
from apportion.core.scenarios._validate import count, number
from apportion.core.scenarios.clusters import speech_cluster, zones_of

TASKS_PER_STREAM = 7
EDGE = ("edge",)


def multimodal_speech(streams: int, nodes: int, seed: int, *, window: float = 300.0) -> tuple[Workload, Cluster]:
    """``streams`` audio-video streams arriving over ``window`` seconds on a site+cloud cluster."""
    count("streams", streams)
    window = number("window", window)
    cluster = speech_cluster(nodes)
    sites = zones_of(cluster, "site")
    rng = np.random.default_rng(seed)

    release = np.sort(rng.uniform(0.0, window, streams)) if window > 0 else np.zeros(streams)
    windows = rng.integers(1, 11, streams)  # 1-10 Whisper windows of 30 s each (assumption)

    tasks: list[Task] = []
    edges: list[Edge] = []
    requests: list[Request] = []
    for i in range(streams):
        rid = f"s{i}"
        seconds = float(windows[i]) * P.WHISPER_WINDOW_S
        requests.append(Request(id=rid, release=float(release[i]), deadline=float(release[i]) + seconds))
        tokens = seconds * P.SPEECH_TOKENS_PER_S
        lip_positions = seconds * P.LIP_FPS

        def task(step, work, kind, memory, **rules):
            tasks.append(Task(id=f"{rid}.{step}", work=float(work), kind=kind, memory=memory, request=rid, **rules))

        def edge(a, b, mb):
            edges.append(Edge(f"{rid}.{a}", f"{rid}.{b}", float(mb)))

        task("capture", seconds * P.CAPTURE_OPS_PER_S / 1e9, "etl", 1.0,
             allowed_kinds=EDGE, allowed_zones=(sites[i % len(sites)],))
        task("audio_frontend", seconds * P.AUDIO_FRONTEND_FLOP_PER_S / 1e9, "etl", 0.2)
        task("video_frontend", lip_positions * P.LIP_FRONTEND_GFLOP, "cnn", 1.0)
        task("asr", windows[i] * (P.transformer_gflop(P.WHISPER_ENC_PARAMS, P.WHISPER_ENCODER_POSITIONS)
                                  + P.transformer_gflop(P.WHISPER_DEC_PARAMS, tokens / windows[i])),
             "transformer", P.WHISPER_MEMORY)
        task("lipread", P.transformer_gflop(P.LIP_ENC_PARAMS, lip_positions), "transformer", P.AVHUBERT_MEMORY)
        task("av_fusion", P.transformer_gflop(P.AV_FUSION_PARAMS, lip_positions), "transformer", 1.0)
        task("nlu", P.transformer_gflop(P.bert_base_nonembedding_params(), tokens), "transformer", P.BERT_MEMORY)

        edge("capture", "audio_frontend", seconds * P.AUDIO_MB_PER_S)
        edge("capture", "video_frontend", seconds * P.MOUTH_CROPS_MB_PER_S)
        edge("audio_frontend", "asr", seconds * 100 * 80 * 4 / 1e6)  # 80 log-mel x 100 frames/s, fp32
        edge("video_frontend", "lipread", lip_positions * 512 * 4 / 1e6)  # 512-d ResNet features
        edge("asr", "av_fusion", seconds * 50 * 768 * 2 / 1e6)  # encoder states, 50/s, fp16
        edge("lipread", "av_fusion", lip_positions * 768 * 2 / 1e6)
        edge("av_fusion", "nlu", tokens * 8 / 1e6)  # transcript text, ~8 bytes per token

    workload = Workload(tasks=tuple(tasks), edges=tuple(edges), requests=tuple(requests),
                        name=f"multimodal_speech-{streams}-s{seed}")
    return workload, cluster
