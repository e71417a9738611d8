"""medical_diagnosis's stand-ins: slices windowed and segmented, lesions classified, notes and labs
modelled, fused, a report drafted."""

from __future__ import annotations

import math
from typing import Mapping

from apportion.operators.steps.kit import SLICE, batches, digit_slices, rng_for


def dicom_prep(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Window and normalise ``items`` slices of the case's scan (intensity statistics)."""
    import numpy as np

    rng = rng_for(seed, "dicom_prep")
    total, foreground = 0.0, 0
    for size in batches(items):
        slices = np.clip(digit_slices(rng, size), 0.0, 1.0)
        slices = (slices - slices.mean(axis=(1, 2), keepdims=True)) / (slices.std(axis=(1, 2), keepdims=True) + 1e-9)
        total += float(slices.sum())
        foreground += int((slices > 0.5).sum())
    return {"slices": items, "foreground_voxels": foreground, "scan_seed": seed}


def ct_seg(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Segment ``items`` slices: smooth, threshold and label connected components."""
    import numpy as np
    from scipy import ndimage

    rng = rng_for(inputs["dicom_prep"]["scan_seed"], "ct_seg")
    regions, foreground, pixels = 0, 0, 0
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)  # components within a slice
    for size in batches(items):
        slices = ndimage.uniform_filter(digit_slices(rng, size), size=(1, 3, 3))
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
    rng = rng_for(seed, "lesion_cls")
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

    rng = rng_for(seed, "notes_nlp")
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

    rng = rng_for(seed, "lab_model")
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

    rng = rng_for(seed, "fusion")
    classifier = inputs["lesion_cls"]
    features = np.array([classifier["malignant_probability"], inputs["ct_seg"]["foreground_share"],
                         inputs["lab_model"]["risk"], float(inputs["notes_nlp"]["mentions_mass"])])
    tokens = np.tile(features, (SLICE, SLICE // 4)) + rng.normal(0.0, 0.01, (SLICE, SLICE))
    for _ in range(items):
        scores = tokens @ tokens.T / math.sqrt(SLICE)
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
    rng = rng_for(seed, "report")
    vocabulary = len(_NOTE_WORDS)
    bigram = rng.dirichlet(np.ones(vocabulary), vocabulary)
    cumulative = bigram.cumsum(axis=1)
    word, drafted = 0, []
    for _ in range(items * SLICE):
        word = min(int(np.searchsorted(cumulative[word], rng.random())), vocabulary - 1)
        if len(drafted) < 24:
            drafted.append(_NOTE_WORDS[word])
    classifier = findings["classifier"]
    text = (f"Lesion classifier: {classifier['label']} (malignant probability "
            f"{classifier['malignant_probability']:.4f}). Fused risk {findings['risk']:.4f}; lab risk "
            f"{findings['lab_risk']:.4f}; notes: {', '.join(findings['top_terms'])}. Draft: {' '.join(drafted)}.")
    return {"report": text, "tokens": items * SLICE, "classifier": classifier}
