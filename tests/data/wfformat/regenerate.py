"""Regenerate the WfFormat test instances with WfCommons recipes (fixed seeds).

Run from the repository root: ``python tests/data/wfformat/regenerate.py``. The instances are
written exactly as wfcommons builds them (``Workflow.generate_json``), compactly.
"""

import json
from pathlib import Path

from apportion.core.wfformat import wfcommons_instance

# (recipe, number of tasks asked for, seed): each recipe's smallest base graph or a bit more.
INSTANCES = [("montage", 60, 1), ("epigenomics", 60, 2), ("1000genome", 60, 3), ("cycles", 70, 4),
             ("soykb", 100, 5), ("montage", 150, 6)]

if __name__ == "__main__":
    here = Path(__file__).parent
    for recipe, num_tasks, seed in INSTANCES:
        path = here / f"{recipe}-{num_tasks}-s{seed}.json"
        path.write_text(json.dumps(wfcommons_instance(recipe, num_tasks, seed), separators=(",", ":")))
        print(path, path.stat().st_size // 1000, "KB")
