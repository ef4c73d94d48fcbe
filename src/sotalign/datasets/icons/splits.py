"""The protocol of the icons benchmark (pure functions): seeded, id-keyed samples and splits
and caption groups (scored by :func:`sotalign.eval.grouped_retrieval_metrics`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from sotalign.errors import InputError

N_TEST = 5000
N_VAL = 1000
N_PAIR_POOL = 10000
SPLIT_SEED = 0
SAMPLE_SEED = 0
SPLIT_DOMAIN = "split:"


# --------------------------------------------------------------------------------------------
# sampling and splits (pure)
# --------------------------------------------------------------------------------------------
def _hash_keys(keys: Sequence[str], seed: int, domain: str = "") -> np.ndarray:
    """A seeded pseudo-random uint64 per key (the first 8 bytes of sha256(domain, seed, key))."""
    out = np.empty(len(keys), dtype=np.uint64)
    s = f"{domain}{int(seed)}\0".encode()
    for i, k in enumerate(keys):
        out[i] = int.from_bytes(hashlib.sha256(s + k.encode()).digest()[:8], "big")
    return out


def hash_order(keys: Sequence[str], seed: int, domain: str = "") -> np.ndarray:
    """Positions of ``keys`` sorted by their seeded hash (ties by position): a seeded shuffle
    in which each key's place depends on the key, not on the order of the list.

    ``domain`` separates uses: two orders with the same seed but different domains are
    independent (the splits use :data:`SPLIT_DOMAIN`; the module doc says why)."""
    return np.lexsort((np.arange(len(keys)), _hash_keys(keys, seed, domain))).astype(np.int64)


def _prefixes_of(ids: Sequence[str]) -> np.ndarray:
    return np.array([i.partition(":")[0] for i in ids], dtype=object)


def spread_quotas(sizes: np.ndarray, total: int, tie: np.ndarray) -> np.ndarray:
    """Integer quotas summing to ``total`` (each ≤ its size): one per non-empty group when
    ``total`` allows, the rest in proportion to the sizes left (largest remainders, ties broken
    by ``tie``, lowest first)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if total >= int(sizes.sum()):
        return sizes.copy()
    base = np.minimum(sizes, 1) if total >= int((sizes > 0).sum()) else np.zeros_like(sizes)
    left = sizes - base
    total_left = total - int(base.sum())
    n_left = int(left.sum())
    exact = left * (total_left / n_left) if n_left else left.astype(float)
    q = np.minimum(np.floor(exact).astype(np.int64), left)
    rest = total_left - int(q.sum())
    for j in np.lexsort((tie, -(exact - q))):
        if rest <= 0:
            break
        if q[j] < left[j]:
            q[j] += 1
            rest -= 1
    return base + q


def sample_evenly(ids: Sequence[str], n: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Sorted positions of ``n`` icons spread evenly over the sets (water-filling).

    Every set gives ``min(size, q)`` icons with the largest ``q`` that fits, and the icons left
    over go one per set to the sets with room, in a seeded order; inside a set the icons are
    taken in seeded hash order. ``n`` at least the corpus size returns everything.
    """
    m = len(ids)
    if n >= m:
        return np.arange(m, dtype=np.int64)
    if n < 1:
        raise InputError(f"cannot sample {n} icons: give a positive number")
    prefixes = _prefixes_of(ids)
    sets, inv = np.unique(prefixes, return_inverse=True)
    sizes = np.bincount(inv, minlength=len(sets))
    # water level: largest q with sum(min(size, q)) <= n
    lo, hi = 0, int(sizes.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(sizes, mid).sum()) <= n:
            lo = mid
        else:
            hi = mid - 1
    quota = np.minimum(sizes, lo)
    extra = n - int(quota.sum())
    for j in hash_order([str(s) for s in sets], seed + 1):
        if extra <= 0:
            break
        if quota[j] < sizes[j]:
            quota[j] += 1
            extra -= 1
    order = hash_order(ids, seed)
    taken = np.zeros(len(sets), dtype=np.int64)
    keep = np.zeros(m, dtype=bool)
    for i in order:
        s = inv[i]
        if taken[s] < quota[s]:
            taken[s] += 1
            keep[i] = True
    return np.flatnonzero(keep).astype(np.int64)


def split_sizes(n: int) -> tuple[int, int, int]:
    """Default ``(n_test, n_val, n_pair_pool)`` for a corpus of ``n`` icons: 5,000 / 1,000 /
    10,000, shrunk to n/5, n/20 and n/5 for small corpora (both unpaired pools keep ~30%)."""
    return min(N_TEST, n // 5), min(N_VAL, n // 20), min(N_PAIR_POOL, n // 5)


def split_icons(
    ids: Sequence[str],
    *,
    n_test: int | None = None,
    n_val: int | None = None,
    n_pair_pool: int | None = None,
    seed: int = SPLIT_SEED,
) -> dict[str, np.ndarray]:
    """The protocol's index sets (positions into ``ids``, ids ``prefix:name``; module doc).

    Keys: ``test``, ``validation``, ``pair_pool``, ``unpaired_images``, ``unpaired_texts``,
    ``shifted_unpaired_images``, ``shifted_unpaired_texts``. The first five are pairwise
    disjoint; the shifted pools are disjoint from each other and from the first three, and no
    set has icons in both shifted pools.
    """
    n = len(ids)
    if len(set(ids)) != n:
        raise InputError("icon ids must be unique")
    d_test, d_val, d_pool = split_sizes(n)
    n_test = d_test if n_test is None else int(n_test)
    n_val = d_val if n_val is None else int(n_val)
    n_pair_pool = d_pool if n_pair_pool is None else int(n_pair_pool)
    if min(n_test, n_val, n_pair_pool) < 0 or n - n_test - n_val - n_pair_pool < 2:
        raise InputError(
            f"icon split sizes test={n_test}, validation={n_val}, pair pool={n_pair_pool} do "
            f"not fit a corpus of {n} icons: use smaller sizes or a larger build"
        )
    prefixes = _prefixes_of(ids)
    sets, inv = np.unique(prefixes, return_inverse=True)
    sizes = np.bincount(inv, minlength=len(sets)).astype(np.int64)
    set_tie = np.argsort(hash_order([str(s) for s in sets], seed + 2, SPLIT_DOMAIN))
    quota = spread_quotas(sizes, n_test, set_tie)
    order = hash_order(ids, seed, SPLIT_DOMAIN)
    taken = np.zeros(len(sets), dtype=np.int64)
    is_test = np.zeros(n, dtype=bool)
    for i in order:
        s = inv[i]
        if taken[s] < quota[s]:
            taken[s] += 1
            is_test[i] = True
    rest = order[~is_test[order]]
    val = rest[:n_val]
    pool = rest[n_val : n_val + n_pair_pool]
    remainder = rest[n_val + n_pair_pool :]
    half = len(remainder) // 2
    # shifted: deal the sets in seeded order to the side holding fewer remainder icons
    counts = np.bincount(inv[remainder], minlength=len(sets))
    side = np.zeros(len(sets), dtype=np.int8)
    load = [0, 0]
    for j in hash_order([str(s) for s in sets], seed + 3, SPLIT_DOMAIN):
        if counts[j] == 0:
            continue
        k = 0 if load[0] <= load[1] else 1
        side[j] = k
        load[k] += int(counts[j])
    rem_side = side[inv[remainder]]
    return {
        "test": np.sort(order[is_test[order]]),
        "validation": val,
        "pair_pool": pool,
        "unpaired_images": remainder[:half],
        "unpaired_texts": remainder[half : 2 * half],
        "shifted_unpaired_images": remainder[rem_side == 0],
        "shifted_unpaired_texts": remainder[rem_side == 1],
    }


def caption_groups(keys: Sequence[str]) -> np.ndarray:
    """Integer group id per key (equal keys, equal ids; numbered by first occurrence)."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)
