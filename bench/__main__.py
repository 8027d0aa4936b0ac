"""`python -m bench [NAME...]`: run the named benchmarks (all when none is named)."""

from __future__ import annotations

import sys

from bench import campaigns, webhooks

BENCHMARKS = {
    "webhooks": webhooks.main,
    "launch": lambda: campaigns.main(("launch",)),
    "export": lambda: campaigns.main(("export",)),
    "import": lambda: campaigns.main(("import",)),
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark {unknown[0]!r}; there are: {', '.join(BENCHMARKS)}", file=sys.stderr
        )
        return 2
    return max(BENCHMARKS[name]() for name in names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
