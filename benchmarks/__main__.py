"""``python -m benchmarks``: run the benchmarks, print each figure beside its peer."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from . import registry


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM/SIGHUP into an exception so every benchmark's cleanup still runs.
    raise SystemExit(128 + signum)


def table(outcomes: Sequence[registry.Outcome]) -> str:
    header = ("benchmark", "figure", "djsupervisor", "peer", "ratio", "target", "peer is")
    rows: list[tuple[str, ...]] = []
    for outcome in outcomes:
        name = outcome.benchmark.name
        if outcome.error is not None:
            rows.append((name, "FAILED", "-", "-", "-", "-", outcome.error.splitlines()[0]))
        for figure in outcome.figures:
            target = "-"
            if figure.target is not None:
                met = figure.target.met(figure)
                verdict = "n/a" if met is None else "ok" if met else "MISSED"
                target = f"{figure.target.describe(figure.unit)} {verdict}"
            ratio = figure.ratio
            rows.append(
                (
                    name,
                    figure.label,
                    registry.format_value(figure.ours, figure.unit),
                    registry.format_value(figure.peer, figure.unit),
                    "-" if ratio is None else f"{ratio:.2f}",
                    target,
                    figure.peer_name,
                )
            )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = {2, 3, 4}

    def line(row: Sequence[str]) -> str:
        pairs = zip(row, widths, strict=True)
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(pairs)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def to_json(outcomes: Sequence[registry.Outcome], *, quick: bool) -> dict[str, Any]:
    import django
    import supervisor.options

    results = []
    for outcome in outcomes:
        for figure in outcome.figures:
            met = figure.target.met(figure) if figure.target else None
            results.append(
                {
                    "benchmark": outcome.benchmark.name,
                    "label": figure.label,
                    "unit": figure.unit,
                    "ours": figure.ours,
                    "peer": figure.peer,
                    "peer_name": figure.peer_name,
                    "ratio": figure.ratio,
                    "target": None
                    if figure.target is None
                    else {"kind": figure.target.kind, "limit": figure.target.limit, "met": met},
                    "samples": figure.samples,
                    "extras": figure.extras,
                }
            )
    return {
        "meta": {
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "quick": quick,
            "python": platform.python_version(),
            "django": django.get_version(),
            "supervisor": supervisor.options.VERSION,
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        "results": results,
        "errors": {o.benchmark.name: o.error for o in outcomes if o.error is not None},
        "durations": {o.benchmark.name: o.seconds for o in outcomes},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="djsupervisor benchmarks, each figure beside its peer from the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (CI smoke)")
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", default="", help="run only these benchmarks or areas"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write results as JSON")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    benchmarks = registry.load()
    if args.list:
        for bench in benchmarks:
            print(f"{bench.name:<18} {bench.description}")
        return 0
    try:
        selected = registry.select(benchmarks, args.only.split(","))
    except KeyError as error:
        parser.error(str(error.args[0]))

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    outcomes: list[registry.Outcome] = []
    for bench in selected:
        print(f"running {bench.name} ...", file=sys.stderr, flush=True)
        try:
            outcome = registry.run(bench, quick=args.quick)
        except (KeyboardInterrupt, SystemExit) as stop:
            # registry.run has cleaned up by now; show what was measured so far.
            print(f"  interrupted; processes cleaned up\n{table(outcomes)}", file=sys.stderr)
            code = stop.code if isinstance(stop, SystemExit) else 130
            return code if isinstance(code, int) else 1
        status = "failed" if outcome.error else "done"
        print(f"  {status} in {outcome.seconds:.1f} s", file=sys.stderr, flush=True)
        if outcome.detail:
            print(outcome.detail, file=sys.stderr, flush=True)
        outcomes.append(outcome)

    print(table(outcomes))
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(outcomes, quick=args.quick), indent=2) + "\n")
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
