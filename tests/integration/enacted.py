"""What the integration tests check of an enacted traffic run, on any executor."""

from __future__ import annotations


def enacted_results(client, dag_id: str, run_id: str, assignments: list[dict]) -> dict[str, dict]:
    """Each enacted step instance's result (``run_step``'s XCom), by workload task id."""
    return {placed["task"]: client.xcom(dag_id, run_id, f"enact.{step}", map_index=index)
            for index, assignment in enumerate(assignments) for step, placed in assignment["steps"].items()}


def check_edges_between_units(assignments: list[dict], results: dict[str, dict]) -> int:
    """Every input a step takes from another unit ended before the step started, and the step
    used it (the forecast lists its neighbours); how many steps waited for one (printed)."""
    across = [(placed["task"], source["task"]) for a in assignments for placed in a["steps"].values()
              for source in placed["after"]]
    assert across
    for task, source in across:
        assert results[source]["realised"]["end"] <= results[task]["realised"]["ti_start"], (task, source)
        assert source in results[task]["output"]["neighbours"]
    waiting = sum(result["realised"]["waited"] > 0 for result in results.values())
    print(f"steps that waited for another region's ingest: {waiting}")
    return waiting
