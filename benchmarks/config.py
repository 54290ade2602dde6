"""Config assembly: djsupervisor's render-and-merge vs supervisord parsing the merged file.

The measurement runs in a subprocess with Django set up from a generated settings
module (``python -m benchmarks.config``), so this process never configures Django.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from .harness import run_worker
from .project import SETTINGS_MODULE, make_project
from .registry import Context, Figure, Target, benchmark

APPS = 50
ASSEMBLE_TARGET = 0.050

# Template variables on purpose: rendering is part of what assembly costs.
APP_CONF = """\
[program:{name}]
command={{{{ PYTHON }}}} -c "import time; time.sleep(600)"
directory={{{{ APP_DIR }}}}
startsecs=0
"""


@benchmark(
    "config.assemble",
    f"project.assemble() for {APPS} apps with a supervisord.conf each "
    "vs ServerOptions().realize() of the merged file",
)
def assemble_config(ctx: Context) -> list[Figure]:
    apps = {f"app{i:02d}": APP_CONF.format(name=f"app{i:02d}") for i in range(APPS)}
    project = make_project(ctx.workdir / "proj", apps=apps)
    repeat = ctx.reps(10, 50)
    merged_file = ctx.workdir / "merged.conf"
    env = {**project.env(), "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
    argv = [sys.executable, "-m", "benchmarks.config", "--repeat", str(repeat)]
    result = run_worker(
        [*argv, "--merged-file", str(merged_file)], cwd=project.path, env=env, timeout=180
    )
    if result["programs"] != APPS:
        raise RuntimeError(f"merged config has {result['programs']} programs, expected {APPS}")
    return [
        Figure(
            label=f"assemble(), {APPS} apps (median of {repeat})",
            unit="s",
            ours=statistics.median(result["ours"]),
            peer=statistics.median(result["peer"]),
            peer_name="ServerOptions().realize(-c merged)",
            target=Target("ours", ASSEMBLE_TARGET),
            samples={"ours": result["ours"], "peer": result["peer"]},
            extras={"first_assemble": result["first"], "programs": result["programs"]},
        )
    ]


def worker(argv: list[str]) -> None:
    """In the benchmark subprocess: time both sides, alternating; print JSON on one line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.config")
    parser.add_argument("--repeat", type=int, required=True)
    parser.add_argument("--merged-file", type=Path, required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from supervisor.options import ServerOptions

    from djsupervisor.config import Options
    from djsupervisor.config.project import assemble, ensure_runtime_dir, locate

    project = locate()
    # realize() requires the log file's and child log dir's directories to exist.
    ensure_runtime_dir(project.runtime_dir)
    options = Options()
    started = time.perf_counter()
    text = assemble(project, options)
    first = time.perf_counter() - started
    args.merged_file.write_text(text)
    realize_args = ["-c", str(args.merged_file)]
    peer_options = ServerOptions()
    peer_options.realize(args=realize_args)  # warm-up, and proof that the file is valid
    programs = sum(len(group.process_configs) for group in peer_options.process_group_configs)

    ours: list[float] = []
    peer: list[float] = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        assemble(project, options)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        ServerOptions().realize(args=realize_args)
        peer.append(time.perf_counter() - started)
    print(json.dumps({"ours": ours, "peer": peer, "first": first, "programs": programs}))


if __name__ == "__main__":
    worker(sys.argv[1:])
