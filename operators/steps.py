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

``WORKFLOW_STEPS`` (standard library only: DAG files read it at parse time) gives each
scenario's steps and, per step, the steps of the same unit it takes inputs from. Edges between
units (a traffic forecaster reading its neighbours' sensors) are not enacted.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

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

# Side of a stand-in CT slice and attention block, and tokens per drafted block.
_SLICE = 64
_BATCH = 256


def items_for(work: float, scale: float) -> int:
    """Stand-in items for a step of ``work`` GFLOP: ``ceil(work * scale)``, at least one."""
    if not (math.isfinite(work) and work >= 0):
        raise ValueError(f"work must be a finite number >= 0, got {work!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return max(1, math.ceil(work * scale))


def _rng(seed: int, step: str):
    import zlib

    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(step.encode())])


def _batches(items: int):
    """Sizes of the batches ``items`` are processed in (vectorised, bounded memory)."""
    for start in range(0, items, _BATCH):
        yield min(_BATCH, items - start)


def _digit_slices(rng, count: int):
    """``count`` CT-like 64 x 64 slices: bundled 8 x 8 digit scans, upsampled, with noise."""
    import numpy as np
    from sklearn.datasets import load_digits

    images = load_digits().images  # 1,797 scans shipped with scikit-learn
    picked = images[rng.integers(0, len(images), count)] / 16.0
    slices = np.kron(picked, np.ones((1, _SLICE // 8, _SLICE // 8)))
    return slices + rng.normal(0.0, 0.05, slices.shape)


# --- medical_diagnosis ---------------------------------------------------------------------

def dicom_prep(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Window and normalise ``items`` slices of the case's scan (intensity statistics)."""
    import numpy as np

    rng = _rng(seed, "dicom_prep")
    total, foreground = 0.0, 0
    for size in _batches(items):
        slices = np.clip(_digit_slices(rng, size), 0.0, 1.0)
        slices = (slices - slices.mean(axis=(1, 2), keepdims=True)) / (slices.std(axis=(1, 2), keepdims=True) + 1e-9)
        total += float(slices.sum())
        foreground += int((slices > 0.5).sum())
    return {"slices": items, "foreground_voxels": foreground, "scan_seed": seed}


def ct_seg(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Segment ``items`` slices: smooth, threshold and label connected components."""
    import numpy as np
    from scipy import ndimage

    rng = _rng(inputs["dicom_prep"]["scan_seed"], "ct_seg")
    regions, foreground, pixels = 0, 0, 0
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)  # components within a slice
    for size in _batches(items):
        slices = ndimage.uniform_filter(_digit_slices(rng, size), size=(1, 3, 3))
        mask = slices > slices.mean(axis=(1, 2), keepdims=True) + 0.1
        _, found = ndimage.label(mask, structure=structure)
        regions += int(found)
        foreground += int(mask.sum())
        pixels += mask.size
    return {"slices": items, "regions": regions, "foreground_share": foreground / pixels,
            "lesion_candidates": 1 + regions % 4}


def lesion_cls(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Classify the case's lesion with an ensemble of ``items`` logistic models, each fitted
    on a bootstrap sample of the bundled breast-cancer data (the lesion itself held out)."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    x = StandardScaler().fit_transform(data.data)
    rng = _rng(seed, "lesion_cls")
    lesion = int(rng.integers(0, len(x)))
    train = np.delete(np.arange(len(x)), lesion)
    votes = []
    for _ in range(items):
        sample = rng.choice(train, size=len(train), replace=True)
        model = LogisticRegression(max_iter=200).fit(x[sample], data.target[sample])
        votes.append(model.predict_proba(x[lesion:lesion + 1])[0, list(model.classes_).index(0)])
    malignant = float(np.mean(votes))  # target 0 is "malignant" in this data set
    return {"label": "malignant" if malignant >= 0.5 else "benign", "malignant_probability": round(malignant, 4),
            "models": items, "lesion_sample": lesion,
            "candidates": inputs["ct_seg"]["lesion_candidates"]}


_NOTE_WORDS = ("patient", "reports", "pain", "chest", "cough", "fever", "mass", "nodule", "history", "smoker",
               "denies", "dyspnea", "weight", "loss", "lesion", "follow", "up", "ct", "contrast", "biopsy",
               "family", "cancer", "stable", "increase", "size", "left", "right", "lobe", "upper", "lower")


def notes_nlp(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """TF-IDF over ``items`` generated clinical notes of 256 tokens; the case's top terms."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = _rng(seed, "notes_nlp")
    words = np.array(_NOTE_WORDS)
    notes = [" ".join(words[rng.zipf(1.3, 256) % len(words)]) for _ in range(items)]
    tfidf = TfidfVectorizer().fit(notes)
    weights = np.asarray(tfidf.transform(notes).sum(axis=0)).ravel()
    terms = tfidf.get_feature_names_out()
    top = [str(terms[i]) for i in np.argsort(-weights, kind="stable")[:5]]
    return {"notes": items, "top_terms": top, "mentions_mass": bool({"mass", "nodule", "lesion"} & set(top))}


def lab_model(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """A ridge regression over ``items`` thousand generated lab rows; the patient's risk score."""
    import numpy as np

    rng = _rng(seed, "lab_model")
    truth = rng.normal(0.0, 1.0, 8)
    gram, moment = np.zeros((8, 8)), np.zeros(8)
    for _ in range(items):
        labs = rng.normal(0.0, 1.0, (1000, 8))
        outcome = labs @ truth + rng.normal(0.0, 0.5, 1000)
        gram += labs.T @ labs
        moment += labs.T @ outcome
    beta = np.linalg.solve(gram + np.eye(8), moment)
    patient = rng.normal(0.0, 1.0, 8)
    return {"rows": items * 1000, "risk": round(float(1 / (1 + np.exp(-patient @ beta))), 4),
            "coefficient_error": float(np.abs(beta - truth).max())}


def fusion(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Fuse imaging, classifier, notes and labs: ``items`` rounds of attention over the
    findings, and a combined risk; the classifier's result travels on to the report."""
    import numpy as np

    rng = _rng(seed, "fusion")
    classifier = inputs["lesion_cls"]
    features = np.array([classifier["malignant_probability"], inputs["ct_seg"]["foreground_share"],
                         inputs["lab_model"]["risk"], float(inputs["notes_nlp"]["mentions_mass"])])
    tokens = np.tile(features, (_SLICE, _SLICE // 4)) + rng.normal(0.0, 0.01, (_SLICE, _SLICE))
    for _ in range(items):
        scores = tokens @ tokens.T / math.sqrt(_SLICE)
        attention = np.exp(scores - scores.max(axis=1, keepdims=True))
        tokens = (attention / attention.sum(axis=1, keepdims=True)) @ tokens
    weights = np.array([0.5, 0.1, 0.3, 0.1])
    return {"risk": round(float(features @ weights), 4), "rounds": items,
            "classifier": {"label": classifier["label"], "malignant_probability": classifier["malignant_probability"]},
            "top_terms": inputs["notes_nlp"]["top_terms"], "lab_risk": inputs["lab_model"]["risk"]}


def report(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Draft the case's report: a bigram model writes ``items`` blocks of 64 tokens of
    findings prose; the text states the classifier's result and the fused risk."""
    import numpy as np

    findings = inputs["fusion"]
    rng = _rng(seed, "report")
    vocabulary = len(_NOTE_WORDS)
    bigram = rng.dirichlet(np.ones(vocabulary), vocabulary)
    cumulative = bigram.cumsum(axis=1)
    word, drafted = 0, []
    for _ in range(items * _SLICE):
        word = min(int(np.searchsorted(cumulative[word], rng.random())), vocabulary - 1)
        if len(drafted) < 24:
            drafted.append(_NOTE_WORDS[word])
    classifier = findings["classifier"]
    text = (f"Lesion classifier: {classifier['label']} (malignant probability "
            f"{classifier['malignant_probability']:.4f}). Fused risk {findings['risk']:.4f}; lab risk "
            f"{findings['lab_risk']:.4f}; notes: {', '.join(findings['top_terms'])}. Draft: {' '.join(drafted)}.")
    return {"report": text, "tokens": items * _SLICE, "classifier": classifier}


# --- traffic_prediction ---------------------------------------------------------------------

_SENSORS = 16
_READINGS = 1000  # loop-detector readings per sensor and item


def _sensor_series(seed: int, items: int):
    """The region's loop-detector flows: an AR(2) process per sensor, ``items`` x 1,000
    readings, with the morning peak as a slow sine."""
    import numpy as np

    rng = _rng(seed, "sensors")
    length = items * _READINGS
    noise = rng.normal(0.0, 1.0, (length, _SENSORS))
    flow = np.zeros((length, _SENSORS))
    for t in range(2, length):  # the AR recursion is sequential: one row of sensors per step
        flow[t] = 0.6 * flow[t - 1] + 0.3 * flow[t - 2] + noise[t]
    return flow + 20.0 + 5.0 * np.sin(np.arange(length) / 300.0)[:, None]


def ingest(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Read and aggregate ``items`` x 1,000 readings of each of the region's 16 sensors."""
    flow = _sensor_series(seed, items)
    return {"readings": int(flow.size), "flow_mean": round(float(flow.mean()), 4), "series_seed": seed,
            "series_items": items}


def detect(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Count vehicles in ``items`` camera frames (background subtraction, threshold, connected
    components) and flag frames whose count is far above the others (incidents)."""
    import numpy as np
    from scipy import ndimage

    rng = _rng(seed, "detect")
    counts = []
    for size in _batches(items):
        frames = _digit_slices(rng, size)
        foreground = ndimage.uniform_filter(frames, size=(1, 3, 3)) > 0.5
        counts.extend(int(ndimage.label(frame)[1]) for frame in foreground)
    counts = np.array(counts, dtype=float)
    spread = counts.std() or 1.0
    return {"frames": items, "vehicles_mean": round(float(counts.mean()), 4),
            "incidents": int(((counts - counts.mean()) / spread > 3.0).sum())}


def forecast(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Fit an AR(4) model per sensor by least squares on the ingested series (``items`` passes
    over it, each on a bootstrap of the windows) and forecast the next 12 readings."""
    import numpy as np

    flow = _sensor_series(inputs["ingest"]["series_seed"], inputs["ingest"]["series_items"]).mean(axis=1)
    lags = np.column_stack([flow[3 - k:len(flow) - 1 - k] for k in range(4)])
    target = flow[4:]
    rng = _rng(seed, "forecast")
    coefficients = []
    for _ in range(items):
        rows = rng.integers(0, len(target), len(target))
        design = np.column_stack([lags[rows], np.ones(len(rows))])
        coefficients.append(np.linalg.lstsq(design, target[rows], rcond=None)[0])
    beta = np.mean(coefficients, axis=0)
    history, ahead = list(flow[-4:]), []
    for _ in range(12):
        ahead.append(float(np.dot(beta[:4], history[::-1][:4]) + beta[4]))
        history.append(ahead[-1])
    slowdown = 1.0 + 0.05 * min(inputs["detect"]["incidents"], 10)
    return {"forecast": [round(v * slowdown, 3) for v in ahead], "fits": items,
            "incidents": inputs["detect"]["incidents"]}


def route(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Answer ``items`` x 16 routing queries on the region's 32 x 32 street grid, edge costs
    from the forecast congestion (Dijkstra)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    rng = _rng(seed, "route")
    side = 32
    congestion = float(np.mean(inputs["forecast"]["forecast"])) / 20.0
    ids = np.arange(side * side).reshape(side, side)
    a = np.concatenate([ids[:, :-1].ravel(), ids[:-1, :].ravel()])
    b = np.concatenate([ids[:, 1:].ravel(), ids[1:, :].ravel()])
    cost = congestion * rng.uniform(0.5, 1.5, len(a))
    graph = coo_matrix((np.concatenate([cost, cost]), (np.concatenate([a, b]), np.concatenate([b, a]))),
                       shape=(side * side, side * side)).tocsr()
    times = []
    for _ in range(items):
        origins = rng.integers(0, side * side, 16)
        distances = dijkstra(graph, indices=origins)
        times.append(distances[np.arange(16), rng.integers(0, side * side, 16)])
    return {"queries": items * 16, "mean_travel_time": round(float(np.mean(times)), 4)}


def signal(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Choose green splits for ``items`` x 64 intersection cycles from the forecast flows
    (the split that minimises Webster's delay, searched on a grid), longer with incidents."""
    import numpy as np

    rng = _rng(seed, "signal")
    flow = np.mean(inputs["forecast"]["forecast"])
    splits = np.linspace(0.2, 0.8, 61)
    chosen = []
    for _ in range(items):
        main = flow * rng.uniform(0.8, 1.2, 64)[:, None]
        cross = flow * rng.uniform(0.3, 0.7, 64)[:, None]
        delay = main / np.maximum(splits - main / 100.0, 1e-3) + cross / np.maximum(1 - splits - cross / 100.0, 1e-3)
        chosen.append(splits[np.argmin(delay, axis=1)])
    extension = 5.0 * min(inputs["detect"]["incidents"], 6)
    return {"cycles": items * 64, "green_share_mean": round(float(np.mean(chosen)), 4),
            "incident_extension_s": extension}


# --- multimodal_speech -------------------------------------------------------------------

_RATE = 8000  # audio samples per second
_WORD_HZ = (300.0, 450.0, 600.0, 750.0, 900.0, 1050.0, 1200.0, 1350.0)
_WORDS = ("open", "close", "the", "door", "window", "please", "now", "lights")


def _stream_audio(seed: int, seconds: int):
    """The stream's audio: one tone per word (a word a second) in noise; and its words."""
    import numpy as np

    rng = _rng(seed, "audio")
    words = rng.integers(0, len(_WORDS), seconds)
    t = np.arange(_RATE) / _RATE
    tones = np.sin(2 * np.pi * np.array(_WORD_HZ)[words][:, None] * t)
    return tones + rng.normal(0.0, 0.5, tones.shape), words


def capture(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Decode ``items`` seconds of the stream's audio (and find the face: its energy per second)."""
    import numpy as np

    audio, words = _stream_audio(seed, items)
    return {"seconds": items, "stream_seed": seed, "rms": round(float(np.sqrt((audio ** 2).mean())), 4),
            "words": [_WORDS[w] for w in words[:16]]}


def audio_frontend(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """MFCC-like features: framed FFT power, a triangular filter bank, log and DCT, over
    ``items`` seconds of audio."""
    import numpy as np
    from scipy.fft import dct, rfft

    audio, _ = _stream_audio(inputs["capture"]["stream_seed"], inputs["capture"]["seconds"])
    frames = np.resize(audio.ravel(), (items * 50, 160))  # 20 ms frames, 50 a second
    power = np.abs(rfft(frames * np.hanning(160), axis=1)) ** 2
    edges = np.linspace(0, power.shape[1] - 1, 28).astype(int)
    bank = np.zeros((26, power.shape[1]))
    for k in range(26):
        bank[k, edges[k]:edges[k + 2] + 1] = np.bartlett(edges[k + 2] - edges[k] + 1)
    mfcc = dct(np.log(power @ bank.T + 1e-9), axis=1, norm="ortho")[:, :13]
    return {"frames": int(len(frames)), "mfcc_mean": [round(float(v), 4) for v in mfcc.mean(axis=0)],
            "stream_seed": inputs["capture"]["stream_seed"]}


def video_frontend(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Gradient-orientation features of ``items`` mouth crops (digit scans stand in)."""
    import numpy as np

    rng = _rng(inputs["capture"]["stream_seed"], "video")
    histograms = []
    for size in _batches(items):
        crops = _digit_slices(rng, size)
        gy, gx = np.gradient(crops, axis=(1, 2))
        angle = np.arctan2(gy, gx)
        histograms.append(np.stack([np.histogram(a, bins=8, range=(-np.pi, np.pi), weights=np.hypot(x, y))[0]
                                    for a, x, y in zip(angle, gx, gy, strict=True)]))
    features = np.concatenate(histograms)
    return {"crops": items, "feature_mean": [round(float(v), 4) for v in features.mean(axis=0)]}


def asr(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Recognise the words: the spectral peak of each one-second window of the stream,
    ``items`` windows, matched to the nearest word tone."""
    import numpy as np

    stream = inputs["audio_frontend"]
    seconds = max(items, 1)
    audio, words = _stream_audio(stream["stream_seed"], seconds)
    spectrum = np.abs(np.fft.rfft(audio, axis=1))
    peak_hz = spectrum.argmax(axis=1) * _RATE / audio.shape[1]
    heard = np.abs(peak_hz[:, None] - np.array(_WORD_HZ)[None, :]).argmin(axis=1)
    return {"transcript": " ".join(_WORDS[w] for w in heard[:16]), "windows": seconds,
            "word_accuracy": round(float((heard == words).mean()), 4), "frames_in": stream["frames"]}


def lipread(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Read ``items`` x 16 mouth crops with a nearest-centroid model of the digit scans."""
    from sklearn.datasets import load_digits
    from sklearn.neighbors import NearestCentroid

    digits = load_digits()
    pixels = digits.data[:, digits.data.std(axis=0) > 0]  # the always-blank border pixels say nothing
    model = NearestCentroid().fit(pixels, digits.target)
    rng = _rng(seed, "lipread")
    picked = rng.integers(0, len(pixels), items * 16)
    read = model.predict(pixels[picked] + rng.normal(0.0, 1.0, (len(picked), pixels.shape[1])))
    return {"crops": int(len(picked)), "viseme_accuracy": round(float((read == digits.target[picked]).mean()), 4),
            "features_in": len(inputs["video_frontend"]["feature_mean"])}


def av_fusion(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Weigh the audio transcript by both modalities' accuracy over ``items`` attention rounds."""
    import numpy as np

    rng = _rng(seed, "av_fusion")
    weights = np.array([inputs["asr"]["word_accuracy"], inputs["lipread"]["viseme_accuracy"]])
    tokens = rng.normal(0.0, 1.0, (_SLICE, _SLICE)) * weights.mean()
    for _ in range(items):
        scores = tokens @ tokens.T / math.sqrt(_SLICE)
        attention = np.exp(scores - scores.max(axis=1, keepdims=True))
        tokens = (attention / attention.sum(axis=1, keepdims=True)) @ tokens
    confidence = float(weights @ np.array([0.7, 0.3]))
    return {"transcript": inputs["asr"]["transcript"], "confidence": round(confidence, 4), "rounds": items}


_INTENTS = {"open": "open", "close": "close", "lights": "lights"}


def nlu(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Find the intent and objects in the fused transcript, ``items`` passes of token counting."""
    from collections import Counter

    words = inputs["av_fusion"]["transcript"].split()
    counts: Counter = Counter()
    for _ in range(items):
        counts.update(words)
    intent = next((_INTENTS[w] for w, _ in counts.most_common() if w in _INTENTS), "none")
    objects = sorted({w for w in words if w in ("door", "window", "lights")})
    return {"intent": intent, "objects": objects, "transcript": inputs["av_fusion"]["transcript"],
            "confidence": inputs["av_fusion"]["confidence"], "passes": items}


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
    "medical_diagnosis": {f.__name__: f for f in (dicom_prep, ct_seg, lesion_cls, notes_nlp, lab_model, fusion,
                                                 report)},
    "traffic_prediction": {f.__name__: f for f in (ingest, detect, forecast, route, signal)},
    "multimodal_speech": {f.__name__: f for f in (capture, audio_frontend, video_frontend, asr, lipread, av_fusion,
                                                 nlu)},
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
