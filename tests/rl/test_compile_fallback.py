"""A learner whose compile (or CUDA graph capture) fails falls back to eager and trains the same.

The default (``resources.compile=cpu``) compiles long CPU runs; a fresh machine may lack the C++
compiler Inductor needs, and another torch release may fail to trace the update. The first check
runs in a child process whose ``CXX`` names no compiler and whose Inductor cache is empty (a
cached program would skip the compiler); the second breaks the graph on purpose. Either way the
compiled BC learner must warn once, train on eagerly, and end bit for bit where an eager learner
with the same seed ends.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .compiled_bc import bc_learners, same_params

SCRIPT = textwrap.dedent(
    f"""
    import logging, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from compiled_bc import bc_learners, same_params

    logging.basicConfig(level=logging.WARNING, format="WARNING %(message)s")
    learners = bc_learners([None, "default"])
    for learner in learners.values():
        learner.run(4)
    print("mode after the first update:", learners["default"].compile)
    print("equal:", same_params(learners[None], learners["default"]))
    """
)


def test_a_failed_compile_falls_back_to_eager(tmp_path):
    env = {**os.environ, "CXX": "/nonexistent/c++", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    warnings = [line for line in output.splitlines() if "torch.compile failed" in line]
    assert len(warnings) == 1, output[-3000:]
    assert "No working C++ compiler" in warnings[0] and "running eager. Install a C++ compiler" in warnings[0]
    assert "mode after the first update: None" in output
    assert "equal: True" in output


def test_an_update_dynamo_cannot_trace_falls_back_to_eager(caplog):
    # An explicit graph break (which the learner's fullgraph=True refuses) stands in for an op
    # that another torch release cannot trace.
    import torch

    learners = bc_learners([None, "default"])
    for learner in learners.values():
        update = learner._update

        def untraceable(phase, update=update):
            torch._dynamo.graph_break()  # nothing eagerly
            return update(phase)

        learner._update = untraceable
    with caplog.at_level(logging.WARNING, logger="tge_ray.rl.learner"):
        for learner in learners.values():
            learner.run(4)
    warnings = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "running eager. Set resources.compile=false" in warnings[0], warnings
    assert learners["default"].compile is None
    assert same_params(learners[None], learners["default"])


def test_a_learner_past_dynamo_s_recompile_limit_runs_eager(caplog):
    """Every learner's update is one code object to Dynamo, compiled at most recompile_limit times
    in a process (8 by default; bench_rl builds more). Past it a learner warns and trains eagerly
    (it once ended the process), bit for bit where an eager learner ends."""
    import torch

    with torch._dynamo.config.patch(recompile_limit=1), caplog.at_level(logging.WARNING, logger="tge_ray.rl.learner"):
        first = bc_learners([None, "default"], hidden=16)  # fills the one entry (if the process had none)
        second = bc_learners([None, "default"], hidden=24)  # another program: one too many
        for learners in (first, second):
            for learner in learners.values():
                learner.run(4)
    warnings = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert warnings and "Dynamo's limit of 1 learner programs" in warnings[-1], warnings
    assert "raise torch._dynamo.config.recompile_limit" in warnings[-1]
    assert second["default"].compile is None and second["default"].step == 4
    assert same_params(second[None], second["default"])


def test_a_cuda_graph_that_cannot_be_captured_runs_eager(caplog):
    """A failed CUDA graph capture (here: no CUDA at all) warns once and trains eagerly, on every
    later run too (the second run once replayed the failed capture's marker and crashed), and
    ends bit for bit where an eager learner ends."""
    learners = bc_learners([None, "cuda-graph"])
    with caplog.at_level(logging.WARNING, logger="tge_ray.rl.learner"):
        for learner in learners.values():
            learner.run(8)  # a whole replay's worth: the capture is tried
            learner.run(8)
    warnings = [r.getMessage() for r in caplog.records if "CUDA graph capture failed" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].endswith("running eager"), warnings
    assert learners["cuda-graph"].step == learners[None].step == 16
    assert same_params(learners[None], learners["cuda-graph"])
