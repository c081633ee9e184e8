"""The envs the project makes: MuJoCo's warnings go to logging, not to stdout and a file."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=True)


def test_mujoco_warnings_are_logged_and_leave_no_file(tmp_path):
    # HalfCheetah's model file makes MuJoCo warn that an attribute is deprecated (at DEBUG now);
    # NaN velocities make it warn that the simulation is unstable (at WARNING, on stderr).
    done = run_python("""
        import numpy as np
        from tge_ray.data.envs import make_env, make_env_vec
        make_env("HalfCheetah-v5").close()
        make_env_vec("HalfCheetah-v5", 2, vectorization_mode="sync").close()
        env = make_env("Hopper-v5")
        env.reset(seed=0)
        env.unwrapped.data.qvel[:] = np.nan
        env.step(env.action_space.sample())
        print("stepped")
    """, tmp_path)
    assert done.stdout == "stepped\n"  # MuJoCo's default handler printed "WARNING: ..." here
    assert list(tmp_path.iterdir()) == []  # and wrote MUJOCO_LOG.TXT
    assert done.stderr.count("MuJoCo: Nan, Inf or huge value in QVEL") == 1
    assert "deprecated" not in done.stderr


def test_a_mujoco_warning_handler_set_before_is_kept(tmp_path):
    done = run_python("""
        import mujoco
        seen = []
        mujoco.set_mju_user_warning(seen.append)
        from tge_ray.data.envs import make_env
        make_env("HalfCheetah-v5").close()
        print(len(seen), "deprecated" in seen[0])
    """, tmp_path)
    assert done.stdout == "1 True\n"
    assert list(tmp_path.iterdir()) == []
