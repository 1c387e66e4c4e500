"""What the numbers nestdsl prints mean, and how they are written: one definition for all.

``compile``, ``train``, their JSON and the docs use the same words: *params* is D_k deployed
alone with its own head, *anytime params* the nested network up to stage k with heads 1..k,
*MACs* multiply-accumulates of convolutions and classifiers for one input. Every table writes
counts with :func:`human`, so the same number never appears in two spellings.
"""

from __future__ import annotations

PARAMS = "params: D_k deployed alone, with its own head."
ANYTIME_PARAMS = "anytime params: the nested network up to stage k, with heads 1..k."
MACS = "MACs: multiply-accumulates of convolutions and classifiers, one input."
INCREMENTAL_MACS = "incr. MACs: what stage k adds when run after stages 1..k-1."

_SUFFIXES = ("", "K", "M", "G", "T", "P")


def human(count: int) -> str:
    """Three significant digits with an SI suffix: 950, 1.23K, 35.7M, 4.09G."""
    value, index = float(count), 0
    while abs(value) >= 999.5 and index < len(_SUFFIXES) - 1:
        value /= 1000
        index += 1
    if index == 0:
        return str(count)
    decimals = 2 if abs(value) < 9.995 else 1 if abs(value) < 99.95 else 0
    return f"{value:.{decimals}f}{_SUFFIXES[index]}"
