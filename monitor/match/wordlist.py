"""Builds the word check's data files (``data/words.*``) from jieba's ``dict.txt``.

    python -m monitor.match.wordlist [--dict PATH] [--out monitor/match/data]

The daemon maps the built files instead of reading jieba's 349,000-line list at start
(about 1 s and 56 MB of peak memory each time): run this when jieba's list changes.
``tests/test_match_words.py`` checks that the shipped files are what this builds.

- ``words.marisa``: every word of the list, in a marisa trie;
- ``words.freq``: the list's total frequency (8 bytes), then each word's frequency by the
  trie's key id (4 bytes each, little-endian; a frequency of 0 is stored as 1);
- ``word_pairs.marisa``: every two consecutive characters inside a word of the list. No
  word crosses a position between two characters that are not such a pair: most hits
  are decided by two lookups here;
- ``word_starts.marisa``: the first two characters of every word: where a position's two
  characters are none, the only word that starts there is its single character.
"""

from __future__ import annotations

import argparse
import struct
from array import array
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import marisa_trie

FILES = ("words.marisa", "words.freq", "word_pairs.marisa", "word_starts.marisa")


def _entries(path: Path | None) -> Iterator[tuple[str, int]]:
    """(word, frequency) of each line of jieba's ``dict.txt`` (word, frequency, tag)."""
    # Streamed: the list is 349,000 lines, and a list of them would double the peak.
    source = path if path is not None else resources.files("jieba").joinpath("dict.txt")
    with source.open("r", encoding="utf-8") as f:
        for line in f:
            word, _, rest = line.partition(" ")
            yield word, int(rest.split(" ", 1)[0])


def build(path: Path | None = None) -> dict[str, bytes]:
    """The contents of each file of ``FILES``, from ``path`` (default: jieba's own list)."""
    words = marisa_trie.Trie(w for w, _ in _entries(path))
    freq = array("I", bytes(4 * len(words)))
    total = 0
    for word, f in _entries(path):
        freq[words[word]] = f or 1
        total += f
    if freq.itemsize != 4:  # pragma: no cover - no such platform in use
        raise RuntimeError("array('I') is not 4 bytes here")
    if struct.pack("=I", 1) != struct.pack("<I", 1):  # pragma: no cover - big-endian
        freq.byteswap()
    pairs = marisa_trie.Trie(
        sorted({w[i : i + 2] for w in words.keys() for i in range(len(w) - 1)})
    )
    starts = marisa_trie.Trie(sorted({w[:2] for w in words.keys() if len(w) > 1}))
    return {
        "words.marisa": words.tobytes(),
        "words.freq": struct.pack("<Q", total) + freq.tobytes(),
        "word_pairs.marisa": pairs.tobytes(),
        "word_starts.marisa": starts.tobytes(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dict", type=Path, help="jieba's dict.txt (default: the installed one)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = p.parse_args(argv)
    for name, data in build(args.dict).items():
        (args.out / name).write_bytes(data)
        print(f"{args.out / name}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
