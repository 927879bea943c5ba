"""The configuration: one YAML file read into validated, frozen models (the package face)."""

from monitor.config.loader import (
    MAX_ALIASED_VALUES,
    LoadedConfig,
    load_config,
    load_yaml,
    parse_config,
)
from monitor.config.models import (
    ChannelConfig,
    Config,
    CrossEditionConfig,
    Defaults,
    DeliveryConfig,
    DigestConfig,
    FeedConfig,
    HttpConfig,
    QuietHours,
    RateLimit,
    RetentionConfig,
    RuleConfig,
    SchedulerConfig,
)
from monitor.config.schema import config_json_schema
from monitor.config.units import parse_duration, parse_size

__all__ = [
    "MAX_ALIASED_VALUES",
    "ChannelConfig",
    "Config",
    "CrossEditionConfig",
    "Defaults",
    "DeliveryConfig",
    "DigestConfig",
    "FeedConfig",
    "HttpConfig",
    "LoadedConfig",
    "QuietHours",
    "RateLimit",
    "RetentionConfig",
    "RuleConfig",
    "SchedulerConfig",
    "config_json_schema",
    "load_config",
    "load_yaml",
    "parse_config",
    "parse_duration",
    "parse_size",
]
