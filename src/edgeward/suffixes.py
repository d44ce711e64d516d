"""The Public Suffix List, one per process.

The list is the copy packaged with ``publicsuffixlist`` (never downloaded at run time). Parsed,
it takes about 0.1 s and 1.2 MB; DMARC, site learning and the look-alike checks each used to
build their own, so it is built once here and shared (it holds no state beyond the list).
"""

from __future__ import annotations

from functools import cache

from publicsuffixlist import PublicSuffixList

__all__ = ["public_suffix_list"]


@cache
def public_suffix_list() -> PublicSuffixList:
    return PublicSuffixList()
