"""Benchmark of :func:`headwater.redaction.redact`: a 1 KB log line against 100 secrets.

Every log record, error and progress line goes through ``redact``, so it must stay fast with
many secrets registered. The baseline, measured in the same run over the same registered
forms, is one compiled regular expression alternation (what the HTTP redaction used before).
Time it with ``pytest benches/test_redaction_benchmarks.py --benchmark-only -s``.

Target (issue #16): ``redact`` is at least 2x faster than the alternation on a line with no
secret (the common case), and masks the same text on a line with one.
"""

from __future__ import annotations

import random
import re
import string
from typing import Any

from headwater import redaction
from headwater.redaction import MASK, redact, register_secret
from shapes import best_of, timed

LINE = (
    "2026-12-01T10:00:00.123Z ERR table resolver failed: HttpStatusError: GET "
    "https://api.example.com/v1/items?page=3&per_page=100: HTTP 500 Internal Server Error "
    "after 5 attempts table=items client=acct-1 "
) * 8
LINE = LINE[:1024]


def secrets(count: int) -> list[str]:
    """Tokens of 32 characters, some with characters that URL-encode or JSON-escape."""
    chars = string.ascii_letters + string.digits + "/+=-_"
    generator = random.Random(16)
    return ["".join(generator.choice(chars) for _ in range(32)) for _ in range(count)]


def test_redact_a_1kb_line_with_100_secrets(benchmark: Any) -> None:
    tokens = secrets(100)
    for token in tokens:
        register_secret(token)
    with_one = LINE[:500] + tokens[50] + LINE[500:]
    assert redact(with_one) == LINE[:500] + MASK + LINE[500:]
    result = benchmark.pedantic(lambda: redact(LINE), rounds=200, iterations=10)
    assert result == LINE
    if not timed(benchmark):
        return
    alternation = re.compile("|".join(re.escape(form) for form in redaction._ordered))
    assert alternation.sub(MASK, with_one) == redact(with_one)
    ours = benchmark.stats.stats.min  # per call: pytest-benchmark divides by iterations
    baseline = best_of(lambda: alternation.sub(MASK, LINE), rounds=200)
    benchmark.extra_info.update(forms=len(redaction._ordered), alternation_seconds=baseline)
    print(
        f"\nredact, 1 KB, {len(redaction._ordered)} registered forms: {ours * 1e6:.1f} us; "
        f"one compiled alternation: {baseline * 1e6:.1f} us ({baseline / ours:.1f}x)"
    )
    assert baseline / ours >= 2
