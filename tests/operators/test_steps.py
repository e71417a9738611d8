"""The enacted steps' stand-ins: real work that grows with the declared size, outputs that flow."""

from __future__ import annotations

import time

import pytest

from apportion.operators.steps import DEFAULT_SCALE, STAND_INS, WORKFLOW_STEPS, items_for, run_stand_in


def run_unit(scenario, work, *, scale=1.0, seed=5):
    """Every step of one unit in dependency order, each fed its upstream outputs."""
    outputs = {}
    for step, needs in WORKFLOW_STEPS[scenario].items():
        outputs[step] = run_stand_in(scenario, step, work=work.get(step, 1.0), scale=scale, seed=seed,
                                     inputs={need: outputs[need] for need in needs})
    return outputs


def test_every_workflow_has_stand_ins_for_its_steps_in_dependency_order():
    for scenario, steps in WORKFLOW_STEPS.items():
        assert scenario in DEFAULT_SCALE
        seen = set()
        for step, needs in steps.items():
            assert set(needs) <= seen, (scenario, step)
            seen.add(step)
    for scenario, stand_ins in STAND_INS.items():
        assert list(stand_ins) == list(WORKFLOW_STEPS[scenario])


def test_medical_outputs_flow_to_the_report():
    outputs = run_unit("medical_diagnosis", {})
    classifier = outputs["lesion_cls"]
    assert classifier["label"] in ("malignant", "benign") and 0 <= classifier["malignant_probability"] <= 1
    assert classifier["candidates"] == outputs["ct_seg"]["lesion_candidates"]
    assert outputs["fusion"]["classifier"] == {k: classifier[k] for k in ("label", "malignant_probability")}
    assert (f"Lesion classifier: {classifier['label']} (malignant probability "
            f"{classifier['malignant_probability']:.4f})") in outputs["report"]["report"]
    assert all(output["items"] == 1 for output in outputs.values())


def test_same_seed_same_outputs_and_another_seed_another_case():
    assert run_unit("medical_diagnosis", {}) == run_unit("medical_diagnosis", {})
    assert run_unit("medical_diagnosis", {}, seed=6)["notes_nlp"] != run_unit("medical_diagnosis", {})["notes_nlp"]


def test_work_grows_with_the_declared_size():
    assert items_for(0.0, 1e-3) == 1 and items_for(2_588_140.8, 1e-3) == 2589 and items_for(10, 2.0) == 20
    small = run_stand_in("medical_diagnosis", "ct_seg", work=1, scale=1, seed=1, inputs={"dicom_prep": {"scan_seed": 1}})
    started = time.perf_counter()
    small = run_stand_in("medical_diagnosis", "ct_seg", work=10, scale=1, seed=1, inputs={"dicom_prep": {"scan_seed": 1}})
    small_seconds = time.perf_counter() - started
    started = time.perf_counter()
    large = run_stand_in("medical_diagnosis", "ct_seg", work=1000, scale=1, seed=1,
                         inputs={"dicom_prep": {"scan_seed": 1}})
    large_seconds = time.perf_counter() - started
    assert (small["items"], large["items"]) == (10, 1000)
    assert large["regions"] > 10 * small["regions"]  # every slice is really segmented
    assert large_seconds > 5 * small_seconds


@pytest.mark.parametrize(("work", "scale"), [(-1.0, 1.0), (float("nan"), 1.0), (1.0, 0.0), (1.0, float("inf"))])
def test_bad_work_or_scale_is_one_clear_error(work, scale):
    with pytest.raises(ValueError, match="work must be|scale must be"):
        run_stand_in("medical_diagnosis", "lab_model", work=work, scale=scale, seed=1)


def test_unknown_step_and_missing_inputs_are_named():
    with pytest.raises(ValueError, match="no stand-in for step 'mri' of 'medical_diagnosis'"):
        run_stand_in("medical_diagnosis", "mri", work=1, scale=1, seed=1)
    with pytest.raises(ValueError, match=r"step 'fusion' needs the outputs of \['ct_seg', 'lab_model'"):
        run_stand_in("medical_diagnosis", "fusion", work=1, scale=1, seed=1, inputs={"lesion_cls": {}})


def test_traffic_outputs_flow_from_sensors_and_cameras_to_routes_and_signals():
    outputs = run_unit("traffic_prediction", {"ingest": 3, "detect": 20})
    assert outputs["ingest"]["readings"] == 3 * 1000 * 16 and outputs["detect"]["frames"] == 20
    assert len(outputs["forecast"]["forecast"]) == 12
    assert outputs["forecast"]["incidents"] == outputs["detect"]["incidents"]
    assert outputs["route"]["mean_travel_time"] > 0 and 0.2 <= outputs["signal"]["green_share_mean"] <= 0.8


def test_speech_transcript_is_the_captured_words_and_reaches_the_intent():
    outputs = run_unit("multimodal_speech", {"capture": 12, "asr": 12})
    assert outputs["asr"]["transcript"].split() == outputs["capture"]["words"][:12]
    assert outputs["asr"]["word_accuracy"] == 1.0  # the tones stand well clear of the noise
    assert outputs["nlu"]["transcript"] == outputs["asr"]["transcript"]
    assert outputs["nlu"]["intent"] in ("open", "close", "lights", "none")
    assert len(outputs["audio_frontend"]["mfcc_mean"]) == 13
