"""The deliverer's settings read from the config models: the one module of
``monitor.deliver`` that knows ``monitor.config``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from monitor.config import ChannelConfig, DeliveryConfig, DigestConfig, RuleConfig
from monitor.config import QuietHours as QuietHoursConfig
from monitor.deliver.settings import (
    ChannelSettings,
    DeliverySettings,
    DigestSchedule,
    QuietHours,
    RateLimit,
)


def delivery_settings(config: DeliveryConfig) -> DeliverySettings:
    return DeliverySettings(
        max_attempts=config.max_attempts,
        max_age_s=config.max_age,
        backoff_s=config.backoff,
        max_backoff_s=config.max_backoff,
        batch=config.batch,
        parallel=config.parallel,
        lease_s=config.lease_seconds(),
    )


def digest_schedule(config: DigestConfig) -> DigestSchedule:
    return DigestSchedule(config.schedule, config.window, config.timezone)


def quiet_hours(config: QuietHoursConfig) -> QuietHours:
    return QuietHours(config.start, config.end, config.timezone)


def channel_settings(name: str, config: ChannelConfig) -> ChannelSettings:
    limit = config.rate_limit
    return ChannelSettings(
        name=name,
        urls=tuple(config.urls),
        body_format=config.body_format(),
        language=config.language,
        timezone=config.timezone,
        title_template=config.title_template,
        body_template=config.body_template,
        digest_title_template=config.digest_title_template,
        digest_body_template=config.digest_body_template,
        rate_limit=RateLimit(limit.count, limit.per) if limit else None,
        digest=digest_schedule(config.digest) if config.digest else None,
        quiet_hours=quiet_hours(config.quiet_hours) if config.quiet_hours else None,
    )


def channels_settings(configs: Mapping[str, ChannelConfig]) -> dict[str, ChannelSettings]:
    """Every configured channel, by name."""
    return {name: channel_settings(name, cfg) for name, cfg in configs.items()}


def rule_digests(rules: Iterable[RuleConfig]) -> dict[str, DigestSchedule]:
    """The rules that send their alerts as digests of their own."""
    return {r.name: digest_schedule(r.digest) for r in rules if r.digest}
