"""Metrics of one decoded plan, in natural units (README, "Metrics").

The background article's definitions: response time = end - start (for a request: its last
task's end minus its release), throughput = completed tasks / total time, resource
utilisation = used / available, task completion rate = completed / total, system stability
= 1 - failed / total. A static plan completes every task and fails none; the execution
simulator reports the realised rates.
"""

from __future__ import annotations

import numpy as np

from apportion.core.evaluate import Schedule
from apportion.core.model import Instance


def plan_metrics(instance: Instance, schedule: Schedule) -> dict[str, float]:
    """Every reported metric of one plan, keyed by name."""
    n, m = instance.n_tasks, instance.n_nodes
    start, end, busy = schedule.start, schedule.end, schedule.busy
    makespan = schedule.stat("makespan")
    used = np.zeros(m, dtype=bool)
    used[schedule.plan.assignment] = True

    n_req = len(instance.request_ids)
    request_end = np.zeros(n_req)
    np.maximum.at(request_end, instance.request_of, end)
    response = request_end - instance.request_release
    node_finish = np.zeros(m)
    np.maximum.at(node_finish, schedule.plan.assignment, end)

    task_misses = int(np.count_nonzero(end > instance.deadline))
    request_misses = int(np.count_nonzero(request_end > instance.request_deadline))
    per_slot = busy / instance.slots  # a node with k slots is k machines' worth of time
    square_sum = float(np.sum(per_slot**2))
    return {
        "makespan": makespan,
        "utilization": schedule.stat("utilization"),
        "utilization_all_nodes": float(busy.sum() / (int(instance.slots.sum()) * makespan)) if makespan > 0 else 1.0,
        "imbalance": schedule.stat("imbalance"),
        "jain_fairness": float(per_slot.sum() ** 2 / (m * square_sum)) if square_sum > 0 else 1.0,
        "completion_spread": float(node_finish[used].max() - node_finish[used].min()),
        "throughput": n / makespan if makespan > 0 else float("inf"),
        "mean_response": float(response.mean()),
        "p95_response": float(np.percentile(response, 95)),
        "weighted_mean_response": schedule.stat("mean_response"),
        "mean_task_response": float(np.mean(end - start)),
        "deadline_misses": task_misses + request_misses,
        "lateness": schedule.stat("lateness"),
        "energy": schedule.stat("energy"),
        "cost": schedule.stat("cost"),
        "nodes_used": int(used.sum()),
        "task_completion_rate": 1.0,
        "stability": 1.0,
    }
