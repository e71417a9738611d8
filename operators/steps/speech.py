"""multimodal_speech's stand-ins: audio captured, audio and video front ends, speech and lip
reading, their fusion, the intent."""

from __future__ import annotations

import math
from typing import Mapping

from apportion.operators.steps.kit import SLICE, batches, digit_slices, rng_for

_RATE = 8000  # audio samples per second
_WORD_HZ = (300.0, 450.0, 600.0, 750.0, 900.0, 1050.0, 1200.0, 1350.0)
_WORDS = ("open", "close", "the", "door", "window", "please", "now", "lights")


def _stream_audio(seed: int, seconds: int):
    """The stream's audio: one tone per word (a word a second) in noise; and its words."""
    import numpy as np

    rng = rng_for(seed, "audio")
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

    rng = rng_for(inputs["capture"]["stream_seed"], "video")
    histograms = []
    for size in batches(items):
        crops = digit_slices(rng, size)
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
    rng = rng_for(seed, "lipread")
    picked = rng.integers(0, len(pixels), items * 16)
    read = model.predict(pixels[picked] + rng.normal(0.0, 1.0, (len(picked), pixels.shape[1])))
    return {"crops": int(len(picked)), "viseme_accuracy": round(float((read == digits.target[picked]).mean()), 4),
            "features_in": len(inputs["video_frontend"]["feature_mean"])}


def av_fusion(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Weigh the audio transcript by both modalities' accuracy over ``items`` attention rounds."""
    import numpy as np

    rng = rng_for(seed, "av_fusion")
    weights = np.array([inputs["asr"]["word_accuracy"], inputs["lipread"]["viseme_accuracy"]])
    tokens = rng.normal(0.0, 1.0, (SLICE, SLICE)) * weights.mean()
    for _ in range(items):
        scores = tokens @ tokens.T / math.sqrt(SLICE)
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
