"""Diagnostics of a run's data, reward and policy stage: each a function that takes a run folder
(:class:`~tge_ray.pipeline.run_folder.RunFolder`; expert share: the task) and returns a small
frozen dataclass whose ``lines()`` ``tge diagnose NAME RUN_DIR`` prints.

    from tge_ray.diagnose.reward_profile import reward_profile
    from tge_ray.pipeline.run_folder import RunFolder
    print("\\n".join(reward_profile(RunFolder.open("runs/my-run")).lines()))

The notes in docs/notes/ say what each one found.
"""

DIAGNOSTICS = {
    "window-reference": "how much of the reward's ordering the embedding keeps: the same k-NN reward on the "
                        "windows themselves, correlated with D_mu's true reward (and a learner trained on it)",
    "rollout-reward": "what the run's reward pays zero, random and the run's own policies, beside D_mu's "
                      "expert and other transitions",
    "reward-profile": "the run's reward by position in D_mu's episodes: steps after the start, steps before the end",
    "policy-ceiling": "reference policies on the run's D_mu: BC on the expert's actions, IQL with a perfect "
                      "reward; every evaluation beside the run's own curves",
    "expert-share": "how soon expert states leave the random data: expert share among the nearest D_mu states "
                    "by step of the expert trajectories",
}
"""Every diagnostic, by its ``tge diagnose`` name, with one line of what it measures."""
