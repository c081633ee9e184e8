"""Typed configs, one per stage, loaded from YAML with dotted command-line overrides.

    cfg = load_config("my.yaml", ["reward.sigma=0.5", "windows.horizon=16"])

:mod:`tge_ray.config.schema` holds the dataclasses (each field documented, each value checked
where the config is made, the RL section in :mod:`tge_ray.config.learners`);
:mod:`tge_ray.config.loading` reads YAML files, packaged config names and overrides into them. The resolved config is written beside every result
(``config.yaml`` in the run folder), so a result always carries the config that made it.
"""

from tge_ray.config.learners import BCConfig, FilteredBCConfig, IQLConfig, ReBRACConfig, RLConfig
from tge_ray.config.loading import (
    apply_override,
    config_from_dict,
    describe_fields,
    dump_config,
    field_docs,
    key_part,
    load_config,
    read_yaml,
    resolve_config_path,
    to_dict,
)
from tge_ray.config.schema import (
    METHODS,
    DiffusionConfig,
    EmbeddingConfig,
    EvaluationConfig,
    ExperimentConfig,
    ResourcesConfig,
    RewardConfig,
    SweepConfig,
    TaskConfig,
    TrackingConfig,
    WindowConfig,
)

__all__ = [
    "METHODS",
    "BCConfig",
    "DiffusionConfig",
    "EmbeddingConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "FilteredBCConfig",
    "IQLConfig",
    "RLConfig",
    "ReBRACConfig",
    "ResourcesConfig",
    "RewardConfig",
    "SweepConfig",
    "TaskConfig",
    "TrackingConfig",
    "WindowConfig",
    "apply_override",
    "config_from_dict",
    "describe_fields",
    "dump_config",
    "field_docs",
    "key_part",
    "load_config",
    "read_yaml",
    "resolve_config_path",
    "to_dict",
]
