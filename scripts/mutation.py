"""Mutation testing of the modules where a one-character slip breaks the fleet.

Run by ``make mutation`` (not part of ``make test`` or CI: it takes tens of minutes on
two cores). For each target below, mutmut mutates the named functions of one module and
runs, against each mutant, only the fast tests listed for it (of those, the ones that
call the mutated function). The score is killed / (killed + survived + timeout); the
result goes to ``tests/results/mutation.json`` and ``tests/results/mutation.md``, with
every surviving mutant's diff. ``tests/README.md`` explains the survivors that remain.

Each target runs in its own scratch copy of the tracked files under
``build/mutation/<target>/``, so targets never share mutmut's state and a run can be
limited to some of them: ``scripts/mutation.py etags backoff``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "build" / "mutation"
RESULTS = ROOT / "tests" / "results"
PACKAGES = ("common", "controller", "agent", "worker", "cli")
TARGET_SCORE = 0.90
# mutmut's exit codes per mutant (mutmut/stats.py), grouped as the score counts them.
KILLED_CODES = {1, 3, 37}
SURVIVED_CODES = {0}
TIMEOUT_CODES = {24, -24, 36, 152, 255}


@dataclass(frozen=True, kw_only=True)
class Target:
    """One module, the functions of it that are mutated, and the tests run against them."""

    name: str
    module: str
    functions: tuple[str, ...]
    tests: tuple[str, ...]

    @property
    def path(self) -> str:
        return self.module.replace(".", "/") + ".py"

    def mutant_globs(self) -> list[str]:
        return [f"{self.module}.{function}__mutmut_*" for function in self.functions]


# Mutant names are ``<module>.x_<function>__mutmut_<n>``, and for a method
# ``<module>.xǁ<Class>ǁ<method>__mutmut_<n>``.
# The staged rollouts' pure rules, without the migration test (a database per mutant).
STAGED_RULES_TESTS = ("tests/controller/test_staged_rules.py", "-k", "not revision")
TARGETS = (
    Target(
        name="etags",
        module="controller.etags",
        functions=("x*",),
        tests=("tests/controller/test_etags.py",),
    ),
    Target(
        name="versions",
        module="controller.versions",
        # Version allocation: the next number, the fleet's highest report, If-Match.
        functions=("x_next_version", "x__highest_reported", "x__check_if_match"),
        tests=(
            "tests/controller/test_restored_database.py",
            "tests/controller/test_config_api.py",
        ),
    ),
    Target(
        name="worker-store",
        module="worker.store",
        functions=("x*",),
        tests=("tests/worker/test_worker_store.py", "tests/worker/test_worker_cas.py"),
    ),
    Target(
        name="backoff",
        module="common.backoff",
        functions=("x*",),
        tests=("tests/common/test_backoff.py",),
    ),
    Target(
        name="hint-schedule",
        module="agent.hint_schedule",
        functions=("x*",),
        tests=("tests/agent/test_hint_schedule.py", "tests/agent/test_hint_schedule_details.py"),
    ),
    Target(
        name="credentials",
        module="controller.credentials",
        functions=("x*",),
        tests=(
            "tests/controller/test_agent_tokens.py",
            "tests/controller/test_credentials.py",
            "tests/controller/test_throttle.py",
        ),
    ),
    Target(
        name="cohorts",
        module="common.cohorts",
        functions=("x*",),
        tests=STAGED_RULES_TESTS,
    ),
    Target(
        name="staged-rules",
        module="controller.staged_rules",
        # Cohort selection (the threshold of each step) and the health judgement.
        functions=("x*",),
        tests=STAGED_RULES_TESTS,
    ),
)


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    return [name for name in out.split("\0") if name]


def _mutmut_section(target: Target) -> str:
    def toml_list(values: tuple[str, ...] | list[str]) -> str:
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"

    return (
        "\n[tool.mutmut]\n"
        f"source_paths = {toml_list(list(PACKAGES))}\n"
        f"only_mutate = {toml_list([target.path])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(target.tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-o", "addopts="]\n'
        'also_copy = ["alembic", "alembic.ini", "docs", "README.md"]\n'
    )


def prepare(target: Target) -> Path:
    """A fresh scratch copy of the tracked files, configured for ``target``."""
    workdir = SCRATCH / target.name
    shutil.rmtree(workdir, ignore_errors=True)
    for name in _tracked_files():
        source = ROOT / name
        if not source.is_file():
            continue
        destination = workdir / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    pyproject = workdir / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + _mutmut_section(target))
    return workdir


def run_mutmut(target: Target, workdir: Path, max_children: int) -> float:
    """Run mutmut for ``target``; the seconds it took."""
    started = time.monotonic()
    env = {**os.environ, "CI": "true"}
    command = [
        sys.executable,
        "-m",
        "mutmut",
        "run",
        f"--max-children={max_children}",
        *target.mutant_globs(),
    ]
    with (workdir / "mutmut.log").open("w") as log:
        subprocess.run(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    return time.monotonic() - started


def _verdict(code: int | None) -> str:
    if code in KILLED_CODES:
        return "killed"
    if code in SURVIVED_CODES:
        return "survived"
    if code in TIMEOUT_CODES:
        return "timeout"
    return "not run" if code is None else f"other ({code})"


def _diff(workdir: Path, mutant: str) -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    return shown.stdout.strip()


def collect(target: Target, workdir: Path, seconds: float) -> dict[str, Any]:
    """The verdict of every mutant of ``target``'s functions, and the score."""
    meta = workdir / "mutants" / (target.path + ".meta")
    codes: dict[str, int | None] = {}
    if meta.exists():
        codes = json.loads(meta.read_text())["exit_code_by_key"]
    globs = target.mutant_globs()
    verdicts = {
        name: _verdict(code)
        for name, code in sorted(codes.items())
        if any(fnmatch.fnmatch(name, pattern) for pattern in globs)
    }
    counts = {
        verdict: sum(1 for v in verdicts.values() if v == verdict)
        for verdict in ("killed", "survived", "timeout")
    }
    counts["other"] = len(verdicts) - sum(counts.values())
    scored = counts["killed"] + counts["survived"] + counts["timeout"]
    survivors = [name for name, verdict in verdicts.items() if verdict != "killed"]
    return {
        "target": target.name,
        "module": target.path,
        "functions": list(target.functions),
        "tests": list(target.tests),
        "mutants": len(verdicts),
        **counts,
        "score": round(counts["killed"] / scored, 4) if scored else None,
        "seconds": round(seconds),
        "survivors": {name: _diff(workdir, name) for name in survivors},
    }


def render_markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "# Mutation testing: last result",
        "",
        "Written by `make mutation` (scripts/mutation.py, mutmut). Score = killed / "
        "(killed + survived + timeout); the target is at least "
        f"{TARGET_SCORE:.0%} per module. Why each survivor is left is in tests/README.md.",
        "",
        "| target | module | mutants | killed | survived | timeout | other | score | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        score = "n/a" if r["score"] is None else f"{r['score']:.1%}"
        lines.append(
            f"| {r['target']} | `{r['module']}` | {r['mutants']} | {r['killed']} | "
            f"{r['survived']} | {r['timeout']} | {r['other']} | {score} | {r['seconds']} |"
        )
    for r in results:
        if not r["survivors"]:
            continue
        lines += ["", f"## Survivors in `{r['module']}`", ""]
        for name, diff in r["survivors"].items():
            lines += [f"### {name}", "", "```diff", diff, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_results(results: list[dict[str, Any]]) -> None:
    """Merge ``results`` into the committed result files (a partial run keeps the rest)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "mutation.json"
    previous = json.loads(path.read_text())["targets"] if path.exists() else []
    merged = {r["target"]: r for r in previous}
    merged.update({r["target"]: r for r in results})
    order = [t.name for t in TARGETS]
    ordered = sorted(merged.values(), key=lambda r: order.index(r["target"]))
    path.write_text(json.dumps({"targets": ordered}, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "mutation.md").write_text(render_markdown(ordered))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.targets or t.name in args.targets]
    results = []
    for target in chosen:
        workdir = prepare(target)
        seconds = run_mutmut(target, workdir, args.max_children)
        result = collect(target, workdir, seconds)
        results.append(result)
        print(
            f"{target.name}: {result['killed']} killed, {result['survived']} survived, "
            f"{result['timeout']} timeout, {result['other']} other; score {result['score']}"
        )
    write_results(results)
    low = [r["target"] for r in results if r["score"] is None or r["score"] < TARGET_SCORE]
    if low:
        print(f"below {TARGET_SCORE:.0%}: {', '.join(low)}")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
