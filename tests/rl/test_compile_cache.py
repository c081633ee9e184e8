"""A compiled learner is compiled once per config, not once per dataset.

Inductor keeps compiled programs in an on-disk cache that later processes (the next ``tge run``,
the next sweep trial) load in seconds instead of compiling again for minutes. The learner leaves
the table's row count symbolic, so a dataset of another size hits that cache too. Two child
processes share one empty cache folder: the first compiles a BC learner on 200 transitions (a
miss), the second builds the same learner on 300 and must find every program in the cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    f"""
    import sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from compiled_bc import bc_learners
    from torch._dynamo.utils import counters

    learner = bc_learners(["default"], n=int(sys.argv[1]))["default"]
    before = {{k: v.clone() for k, v in learner.params.items()}}
    learner.run(4)
    assert learner.compile == "default", "the compile fell back to eager"
    assert all(not torch.equal(before[k], learner.params[k]) for k in before), "no update happened"
    print("misses", counters["inductor"]["fxgraph_cache_miss"], "hits", counters["inductor"]["fxgraph_cache_hit"])
    """
)


def cache_counts(rows: int, cache: Path) -> tuple[int, int]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(rows)], env=env, capture_output=True, text=True,
                          timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    line = next(line for line in output.splitlines() if line.startswith("misses"))
    _, misses, _, hits = line.split()
    return int(misses), int(hits)


def test_a_dataset_of_another_size_reuses_the_compiled_learner(tmp_path):
    misses, _ = cache_counts(200, tmp_path / "inductor")
    assert misses >= 1  # the cache started empty: this process compiled
    misses, hits = cache_counts(300, tmp_path / "inductor")
    assert (misses, hits >= 1) == (0, True), (misses, hits)
