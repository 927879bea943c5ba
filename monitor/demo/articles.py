"""The stories the demo replays: real RFI 中文 articles shipped as package data (title,
link, publish time and a short excerpt; see ``articles/SOURCES.md``), each in its
Simplified (/cn) and Traditional (/tw) edition, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from monitor.archive.format import ArchiveEntry, parse_archive

EDITIONS = ("cn", "tw")  # the folders under articles/, and the feeds' paths (/cn/rss)


@dataclass(frozen=True)
class Story:
    """One article in both editions."""

    id: str  # the archive's file name: RFI's mirror numbered them, newer lower
    cn: ArchiveEntry
    tw: ArchiveEntry

    def edition(self, name: str) -> ArchiveEntry:
        return self.cn if name == "cn" else self.tw


def load_stories() -> tuple[Story, ...]:
    """Every shipped story, oldest first (by publish time, then by the archive's order)."""
    root = resources.files("monitor.demo").joinpath("articles")
    found: dict[str, dict[str, ArchiveEntry]] = {}
    for edition in EDITIONS:
        for f in root.joinpath(edition).iterdir():
            if f.name.endswith(".md"):
                entry = parse_archive(f.read_text(encoding="utf-8"), f"{edition}/{f.name}")
                found.setdefault(f.name.removesuffix(".md"), {})[edition] = entry
    stories = [Story(sid, e["cn"], e["tw"]) for sid, e in found.items() if set(e) == set(EDITIONS)]
    return tuple(sorted(stories, key=lambda s: (s.cn.published_ms, -int(s.id))))
