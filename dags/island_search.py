"""
### Island search: NSGA-II split into K islands on the optimizer workers, fronts merged

Triggered by hand. Builds one scenario instance (the `scenario`, `size`, `nodes` and `seed`
Params) and searches it with `islands` (K) independent NSGA-II runs, one mapped task each on
the `optimizer` queue, so any worker serving that queue can take any island. The islands'
seeds derive from `seed` alone; with `emphasis` island 0 searches every objective and islands
1..K-1 each leave one out in turn (they explore the edges of the front). Each round's fronts
are merged (non-dominated plans of least constraint violation, one per objective vector, the
previous round's merged front included); with `rounds` > 1 the next round's islands start
from the merged front (migration: at most `population` plans, the most spread out).

**Steps** (Graph view): `build_workload` writes workload.json and cluster.json; `plan_islands`
lists round 1's islands; `search_round_1` (mapped, queue `optimizer`) runs them;
`merge_round_1` merges their fronts and lists round 2's islands, which `plan_round_2` hands to
`search_round_2`; `merge_round_2`... likewise (a round past `rounds` has no islands: its search
is skipped and its merge passes the front through); `record` picks the plan with `select` and
logs everything to the DAG run's MLflow run.

**Results**: MLflow experiment `island_search`, one run per DAG run (named after the DAG run
id): `plan/makespan`, `plan/utilization`, `plan/imbalance`... of the chosen plan,
`search/hypervolume` and `search/pareto_size` of the merged front (hypervolume in the box of the
baselines' plans), `merged/hypervolume` and `island/<i>/hypervolume`, `island/<i>/pareto_size`,
`island/<i>/seconds` (one step per round), `merged/non_dominated` and
`merged/weakly_dominates_islands` (1 = checked true); artifacts plan.json, pareto.csv,
schedule.csv, front.json. Files are stored in the storage root (`APPORTION_STORAGE_URL`,
docs/storage.md); XComs carry their URIs (`front_uri`, `migrants_uri`, `plan_uri`,
`artifact_uri`) and the MLflow run the tag `apportion.artifact_uri`. Each `search_round_*` XCom
names the worker the island ran on as Airflow records it (`hostname`); each merge's says whether
the merged front is non-dominated and weakly dominates every island's front.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, get_current_context, task
from allocation_workflow import DEFAULT_ARGS, START_DATE, build_workload, chosen_scenario_params, optimiser_params

DAG_ID = "island_search"
OPTIMIZER_QUEUE = "optimizer"
# The rounds wired below; ``apportion.core.islands.MAX_ROUNDS`` (tests check they agree).
MAX_ROUNDS = 3
MAX_ISLANDS = 16


def _search_arguments(params) -> dict:
    return {name: params[name] for name in ("population", "generations", "seed", "objectives", "select")}


@task
def plan_islands(built: dict) -> list[dict]:
    """Round 1's islands: seeds from the run's seed, objective emphasis, the spec files."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.islands import island_jobs

    params = get_current_context()["params"]
    with fail_on_bad_input("plan_islands"):
        return island_jobs(built["workload"], built["cluster"], islands=params["islands"], seed=params["seed"],
                           objectives=params["objectives"], emphasis=params["emphasis"])


@task(queue=OPTIMIZER_QUEUE)
def search_island(job: dict) -> dict:
    """One island's NSGA-II search (on an optimizer worker); its front is stored in the storage root (XCom: its URI)."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.islands import search_island as search

    context = get_current_context()
    with fail_on_bad_input("search_island"):
        return search(job, **_search_arguments(context["params"]), context=context)


@task
def next_islands(merged: dict) -> list[dict]:
    """The next round's islands as the merge listed them (none after the last round, which
    leaves the next search with nothing to map over: skipped)."""
    return merged["jobs"]


@task(trigger_rule="none_failed")
def merge_round(previous: dict | None, islands, round: int) -> dict:
    """Merge the round's fronts, check the merge, list the next round's islands (``jobs``)."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.islands import merge_round as merge

    context = get_current_context()
    params = context["params"]
    with fail_on_bad_input("merge_round"):
        return merge(previous, list(islands or ()), round=round, rounds=params["rounds"],
                     emphasis=params["emphasis"], **_search_arguments(params), context=context)


@task(trigger_rule="none_failed")
def record(merged: dict, built: dict) -> dict:
    """Pick the plan from the final merged front; log it all to the DAG run's MLflow run."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.islands import record_islands

    context = get_current_context()
    params = context["params"]
    with fail_on_bad_input("record"):
        return record_islands(merged, islands=params["islands"], rounds=params["rounds"],
                              scenario_params=built["scenario_params"], **_search_arguments(params),
                              context=context)


with DAG(
    dag_id=DAG_ID,
    description="Search plans with K NSGA-II islands on the optimizer workers, merge their fronts, migrate.",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["apportion", "allocation", "islands"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        **chosen_scenario_params(default_size=3, purpose="the islands search"),
        **optimiser_params(with_algorithm=False),
        "population": Param(24, type="integer", minimum=4, maximum=2000, title="Population", section="Islands",
                            description="NSGA-II population of each island (4-2000)."),
        "generations": Param(10, type="integer", minimum=1, maximum=5000, title="Generations", section="Islands",
                             description="Generations of each island in each round (1-5000)."),
        "islands": Param(4, type="integer", minimum=1, maximum=MAX_ISLANDS, title="Islands (K)", section="Islands",
                         description=f"How many independent NSGA-II searches each round runs (1-{MAX_ISLANDS}), "
                                     "one mapped task each on the optimizer queue."),
        "rounds": Param(2, type="integer", minimum=1, maximum=MAX_ROUNDS, title="Rounds", section="Islands",
                        description=f"Search rounds (1-{MAX_ROUNDS}); each round after the first starts from "
                                    "the merged front (migration)."),
        "emphasis": Param(True, type="boolean", title="Objective emphasis", section="Islands",
                          description="Islands 1..K-1 each search all objectives but one, in turn; "
                                      "off: the islands differ by seed only."),
    },
) as dag:
    built = build_workload()
    merged = merge_round.override(task_id="merge_round_1")(
        None, search_island.override(task_id="search_round_1").expand(job=plan_islands(built)), round=1)
    for number in range(2, MAX_ROUNDS + 1):
        jobs = next_islands.override(task_id=f"plan_round_{number}")(merged)
        islands = search_island.override(task_id=f"search_round_{number}").expand(job=jobs)
        merged = merge_round.override(task_id=f"merge_round_{number}")(merged, islands, round=number)
    record(merged, built)
