"""Does the parity proof still hold on the newest releases of the references?

The first step of bumping the pins (docs/setup.md, "Bumping the pinned versions"). It

1. builds a throw-away venv and installs the project there (``pip install -e ".[dev]"``) with the
   newest release of every reference: transformers, tokenizers, peft, sentencepiece, huggingface_hub,
   safetensors. torch stays at its pin in constraints.txt (``--torch VERSION`` tries another);
2. runs ``pytest tests/parity`` there and in the pinned environment, both from the repository root
   against the repository's own package;
3. prints the versions, every test whose outcome differs between the two runs, and a summary.

How the packages of the newest venv are chosen:

- each reference at its newest release: the version ``pip install --dry-run --no-deps`` picks in that
  venv (pre-releases and yanked releases left out), then requested exactly (``transformers==X``), so
  that pip cannot quietly fall back to an older reference;
- everything else at its pin in constraints.txt, so that a failure can only come from a reference;
- when pip cannot resolve that because a newest reference needs a newer dependency, the pins pip names
  in the conflict are dropped and the install is tried again ("floated"); the output lists every
  package that ended up away from its pin. torch is never floated: pass ``--torch VERSION``.

The pinned environment is, by default (``--pinned auto``), the interpreter that runs this script when
its torch and references match constraints.txt; otherwise a second venv built with
``pip install -c constraints.txt -e ".[dev]"``. ``--pinned here`` insists on this interpreter,
``--pinned build`` always builds.

Exit status: 0 when the newest run has no failure and no error, 1 when it has one, 2 when the check
could not be set up (the message says what to do). pip and pytest write to a log file whose path is
printed first. Only the standard library: this runs before anything is installed.

Run:  python scripts/check_reference_drift.py [--torch VERSION] [--keep] [--venv DIR]
                                             [--pinned auto|here|build] [--pinned-venv DIR]
                                             [--json PATH] [-- extra pytest arguments]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
PARITY_TESTS = "tests/parity"

RUNTIME = "torch"
REFERENCES = ("transformers", "tokenizers", "peft", "sentencepiece", "huggingface-hub", "safetensors")

# What a venv holds that is no pin of ours (pip freeze leaves them out too).
NOT_PINNED = {"minitransformer", "setuptools", "wheel", "distribute"}

PASSED, FAILED, ERROR, SKIPPED, XFAILED = "passed", "failed", "error", "skipped", "xfailed"
NOT_RUN = "not run"  # the test is in the other run only
OUTCOME_ORDER = (PASSED, FAILED, ERROR, SKIPPED, XFAILED, NOT_RUN)
FAILING = {FAILED, ERROR}

MAX_FLOAT_ROUNDS = 10  # conflicts pip can report before we give up floating pins
HEARTBEAT_SECONDS = 30


class SetupError(Exception):
    """The check could not be set up or run; the message says what to do. Exit status 2."""


# ---------------------------------------------------------------------------------------------------
# The pure parts: constraints, junit XML, the comparison. The unit tests cover these.
# ---------------------------------------------------------------------------------------------------


def canonical(name: str) -> str:
    """A package name as pip compares them (PEP 503): ``huggingface_hub`` -> ``huggingface-hub``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_constraints(text: str) -> dict[str, str]:
    """``name==version`` lines in file order, keyed by canonical name; comments and blank lines skipped.

    >>> parse_constraints("# refs\\ntorch==2.13.0\\nhuggingface_hub==2.4.0  # the hub\\n")
    {'torch': '2.13.0', 'huggingface-hub': '2.4.0'}
    """
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)", line)
        if match is None:
            raise ValueError(
                f"constraints.txt line {number}: {raw.strip()!r} is not 'name==version'; "
                "every line must pin one package exactly (regenerate it with pip freeze, docs/setup.md)"
            )
        name = canonical(match.group(1))
        if name in pins:
            raise ValueError(f"constraints.txt line {number}: {match.group(1)} is pinned twice; keep one")
        pins[name] = match.group(2)
    return pins


def missing_pins(pins: Mapping[str, str]) -> list[str]:
    """The runtime and references that constraints.txt must pin and does not."""
    return [name for name in (RUNTIME, *REFERENCES) if name not in pins]


def same_version(installed: str, pinned: str) -> bool:
    """Whether ``installed`` satisfies ``==pinned``: a local label (``2.13.0+cpu``) matches ``2.13.0``."""
    if "+" in pinned:
        return installed == pinned
    return installed.split("+", 1)[0] == pinned


def mismatched_pins(pins: Mapping[str, str], installed: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """``name: installed X, pinned Y`` for each of ``names`` whose installed version is not its pin."""
    problems = []
    for name in names:
        have = installed.get(name)
        if have is None:
            problems.append(f"{name}: not installed, pinned {pins[name]}")
        elif not same_version(have, pins[name]):
            problems.append(f"{name}: installed {have}, pinned {pins[name]}")
    return problems


def newest_constraints(pins: Mapping[str, str], torch_version: str, floated: Iterable[str]) -> str:
    """The constraints file of the newest venv: every pin except the references and the floated ones.

    torch is pinned at ``torch_version``; the references are left out because they are requested
    exactly on the command line.
    """
    left_out = set(REFERENCES) | set(floated)
    lines = [
        "# Written by scripts/check_reference_drift.py: constraints.txt without the references"
        + (f" and without {', '.join(sorted(floated))} (floated)" if floated else "")
    ]
    for name, version in pins.items():
        if name == RUNTIME:
            lines.append(f"{RUNTIME}=={torch_version}")
        elif name not in left_out:
            lines.append(f"{name}=={version}")
    return "\n".join(lines) + "\n"


def conflicting_pins(pip_output: str) -> set[str]:
    """The constrained packages pip names in a ResolutionImpossible report.

    pip prints one line per constraint in the conflict, for example
    ``The user requested (constraint) huggingface-hub==0.20.0``.
    """
    found = re.findall(r"The user requested \(constraint\) ([A-Za-z0-9][A-Za-z0-9._-]*)\s*==", pip_output)
    return {canonical(name) for name in found}


@dataclass(frozen=True)
class Outcome:
    outcome: str  # one of OUTCOME_ORDER
    message: str = ""  # first line of the failure, error or skip reason


def node_id(classname: str, name: str) -> str:
    """A pytest node id from junit's ``classname`` and ``name``.

    ``tests.parity.test_gpt2_parity.TestLogits`` + ``test_fp32[2]`` ->
    ``tests/parity/test_gpt2_parity.py::TestLogits::test_fp32[2]``. Parts that start with a capital
    letter are classes; the rest is the module's path. A collection error has an empty classname and
    the module as its name.
    """
    parts = [part for part in classname.split(".") if part]
    if not parts:
        return name.replace(".", "/") + ".py"
    split = next((i for i, part in enumerate(parts) if part[:1].isupper()), len(parts))
    module = "/".join(parts[:split]) + ".py"
    return "::".join([module, *parts[split:], name])


def first_line(text: str | None, limit: int = 120) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def testcase_outcome(case: ET.Element) -> Outcome:
    """The outcome of one junit ``<testcase>``; a failure wins over an error over a skip."""
    by_tag = {child.tag: child for child in case}
    if "failure" in by_tag:
        return Outcome(FAILED, failure_message(by_tag["failure"]))
    if "error" in by_tag:
        return Outcome(ERROR, failure_message(by_tag["error"]))
    if "skipped" in by_tag:
        skipped = by_tag["skipped"]
        kind = XFAILED if skipped.get("type") == "pytest.xfail" else SKIPPED
        return Outcome(kind, first_line(skipped.get("message")))
    return Outcome(PASSED)


def failure_message(element: ET.Element) -> str:
    """First line of a ``<failure>``/``<error>``; for a collection error, the ``E`` line of its traceback."""
    message = first_line(element.get("message"))
    if message and message != "collection failure":
        return message
    for line in (element.text or "").splitlines():
        if line.startswith("E "):
            return first_line(line[1:])
    return message or first_line(element.text)


def parse_junit(xml_text: str) -> dict[str, Outcome]:
    """Every ``<testcase>`` of a pytest junit XML report, by test id."""
    root = ET.fromstring(xml_text)
    outcomes: dict[str, Outcome] = {}
    for case in root.iter("testcase"):
        key = node_id(case.get("classname", ""), case.get("name", ""))
        outcome = testcase_outcome(case)
        if key not in outcomes or (outcome.outcome in FAILING and outcomes[key].outcome not in FAILING):
            outcomes[key] = outcome  # a test reported twice counts as failing if either report fails
    return outcomes


@dataclass(frozen=True)
class Difference:
    test: str
    pinned: str
    newest: str
    message: str  # the first line of whichever run failed, the newest one first


def compare(pinned: Mapping[str, Outcome], newest: Mapping[str, Outcome]) -> list[Difference]:
    """Every test whose outcome differs between the runs; a test one run lacks is "not run" there."""
    differences = []
    for test in sorted(set(pinned) | set(newest)):
        old = pinned.get(test, Outcome(NOT_RUN))
        new = newest.get(test, Outcome(NOT_RUN))
        if old.outcome == new.outcome:
            continue
        message = new.message if new.outcome in FAILING else old.message or new.message
        differences.append(Difference(test, old.outcome, new.outcome, message))
    return differences


def failing_in_both(pinned: Mapping[str, Outcome], newest: Mapping[str, Outcome]) -> list[str]:
    """Tests that fail at the pins as well: no drift, the tree itself is broken."""
    return sorted(
        test
        for test, outcome in pinned.items()
        if outcome.outcome in FAILING and newest.get(test, Outcome(NOT_RUN)).outcome in FAILING
    )


def count_outcomes(outcomes: Mapping[str, Outcome]) -> dict[str, int]:
    counts = {kind: 0 for kind in OUTCOME_ORDER}
    for outcome in outcomes.values():
        counts[outcome.outcome] += 1
    return {kind: n for kind, n in counts.items() if n}


def describe_counts(counts: Mapping[str, int]) -> str:
    """``{"passed": 480, "skipped": 2}`` -> ``480 passed, 2 skipped``."""
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no tests"


def exit_status(newest: Mapping[str, Outcome]) -> int:
    """0 when the newest run has no failure and no error, 1 otherwise."""
    return 1 if any(outcome.outcome in FAILING for outcome in newest.values()) else 0


def version_rows(pins: Mapping[str, str], newest_installed: Mapping[str, str]) -> list[list[str]]:
    """``[package, pinned, newest, changed?]`` for torch and each reference."""
    rows = []
    for name in (RUNTIME, *REFERENCES):
        newest = newest_installed.get(name)
        if newest is None:
            rows.append([name, pins[name], "not installed", "?"])
        else:
            rows.append([name, pins[name], newest, "no" if same_version(newest, pins[name]) else "yes"])
    return rows


def moved_packages(pins: Mapping[str, str], installed: Mapping[str, str]) -> list[list[str]]:
    """``[package, pinned, newest venv]`` for every other package away from its pin, new or gone."""
    pinned_others = {name: version for name, version in pins.items() if name not in (RUNTIME, *REFERENCES)}
    rows = []
    for name in sorted(set(pinned_others) | set(installed)):
        if name in NOT_PINNED or name in (RUNTIME, *REFERENCES):
            continue
        pinned, have = pinned_others.get(name), installed.get(name)
        if pinned is not None and have is not None and same_version(have, pinned):
            continue
        rows.append([name, pinned or "(not pinned)", have or "(not installed)"])
    return rows


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A pipe table, aligned, so that it reads in a terminal and pastes into an issue."""
    cells = [[cell.replace("|", "\\|") for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"

    return "\n".join([line(cells[0]), line(["-" * width for width in widths]), *map(line, cells[1:])])


# ---------------------------------------------------------------------------------------------------
# The parts that run things: venvs, pip, pytest.
# ---------------------------------------------------------------------------------------------------


class Log:
    """One file that collects the output of every pip and pytest command; prints progress meanwhile."""

    def __init__(self, path: Path, steps: int):
        self.path, self.steps, self.step_number = path, steps, 0
        self.path.write_bytes(b"")

    def step(self, message: str) -> None:
        self.step_number += 1
        print(f"[{self.step_number}/{self.steps}] {message}", flush=True)

    def run(self, command: list[str], env: Mapping[str, str] | None = None) -> tuple[int, str]:
        """Run ``command`` in the repository root, its output appended to the log; its status and output."""
        with self.path.open("ab") as log:
            log.write(f"\n$ {shlex.join(command)}\n".encode())
            log.flush()
            start = log.tell()
            began = time.monotonic()
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                while True:
                    try:
                        returncode = process.wait(timeout=HEARTBEAT_SECONDS)
                        break
                    except subprocess.TimeoutExpired:
                        print(f"      {time.monotonic() - began:4.0f} s  {self.last_line()}", flush=True)
            except BaseException:
                process.kill()
                process.wait()
                raise
        with self.path.open("rb") as log:
            log.seek(start)
            return returncode, log.read().decode(errors="replace")

    def last_line(self, limit: int = 90) -> str:
        with self.path.open("rb") as log:
            log.seek(max(0, self.path.stat().st_size - 4096))
            tail = log.read().decode(errors="replace")
        lines = [line.strip() for line in re.split(r"[\r\n]", tail) if line.strip()]
        text = lines[-1] if lines else ""
        if text.startswith("$ "):
            text = "(no output yet)"
        return text if len(text) <= limit else text[: limit - 3] + "..."


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def env_for(python: Path) -> dict[str, str]:
    """The environment a command in ``python``'s venv sees: its bin first, no PYTHONPATH from outside."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = str(python.parent) + os.pathsep + env.get("PATH", "")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if (python.parent.parent / "pyvenv.cfg").is_file():
        env["VIRTUAL_ENV"] = str(python.parent.parent)
    return env


INSTALLED_VERSIONS = (
    "import importlib.metadata as m, json\n"
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))"
)


def installed_versions(python: Path) -> dict[str, str]:
    """Every distribution installed for ``python``, by canonical name."""
    result = subprocess.run(
        [str(python), "-c", INSTALLED_VERSIONS], capture_output=True, text=True, env=env_for(python)
    )
    if result.returncode != 0:
        raise SetupError(f"could not list the packages of {python}:\n{result.stderr.strip()}")
    return {canonical(name): version for name, version in json.loads(result.stdout).items()}


def create_venv(venv: Path, log: Log) -> Path:
    python = venv_python(venv)
    if python.exists():
        print(f"      reusing {venv}")
        return python
    returncode, output = log.run([sys.executable, "-m", "venv", str(venv)])
    if returncode != 0:
        raise SetupError(
            f"python -m venv {venv} failed:\n{output.strip()}\n"
            "Install the venv module of this Python (Debian/Ubuntu: apt install python3-venv) and rerun."
        )
    return python


def pip(python: Path, log: Log, *arguments: str) -> tuple[int, str]:
    return log.run([str(python), "-m", "pip", *arguments], env=env_for(python))


def upgrade_pip(python: Path, pins: Mapping[str, str], log: Log) -> None:
    """The venv's bundled pip may be old (``--report`` needs 22.2); install the pinned one."""
    wanted = f"pip=={pins['pip']}" if "pip" in pins else "pip"
    returncode, _ = pip(python, log, "install", "--quiet", wanted)
    if returncode != 0:
        raise SetupError(f"could not install {wanted} in {python.parent.parent}; see the log {log.path}")


def newest_releases(python: Path, workdir: Path, log: Log) -> dict[str, str]:
    """The newest release of each reference that installs on ``python``, by asking pip (dry run)."""
    report = workdir / "newest-releases.json"
    dry_run = ["install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet", "--report", str(report)]
    returncode, _ = pip(python, log, *dry_run, *REFERENCES)
    if returncode != 0:
        raise SetupError(
            f"pip could not find the references on the package index; see the log {log.path}. "
            "Check that this machine reaches PyPI (pip config list shows the index it uses)."
        )
    found = {
        canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    return {name: found[name] for name in REFERENCES}


def install_newest(
    python: Path,
    pins: Mapping[str, str],
    newest: Mapping[str, str],
    torch_version: str,
    workdir: Path,
    log: Log,
) -> list[str]:
    """Install the project with the newest references; returns the pins that had to float."""
    floated: list[str] = []
    for _ in range(MAX_FLOAT_ROUNDS):
        constraints = workdir / "constraints-newest.txt"
        constraints.write_text(newest_constraints(pins, torch_version, floated))
        references = [f"{name}=={version}" for name, version in newest.items()]
        install = ["install", "-c", str(constraints), "-e", f"{REPO}[dev]", *references]
        returncode, output = pip(python, log, *install)
        if returncode == 0:
            return floated
        blocking = conflicting_pins(output) - set(floated)
        if RUNTIME in blocking:
            raise SetupError(
                f"a newest reference does not install with torch {torch_version} (see the log {log.path}, "
                "'The conflict is caused by'). Rerun with --torch VERSION, the torch it asks for."
            )
        if "ResolutionImpossible" not in output or not blocking:
            raise SetupError(
                f"pip install in the newest venv failed, and not on a pin this script can float; see the "
                f"end of the log {log.path}. Two newest references that ask for different versions of "
                "each other do not fit together yet: wait for their next releases. If it is "
                f"torch=={torch_version}: pip config list shows any global constraint that caps torch here."
            )
        print(f"      pip cannot resolve the pins of {', '.join(sorted(blocking))}: letting them float")
        floated += sorted(blocking)
    raise SetupError(f"still conflicting after floating {len(floated)} pins; see the log {log.path}")


def install_pinned(python: Path, log: Log) -> None:
    returncode, _ = pip(python, log, "install", "-c", str(CONSTRAINTS), "-e", f"{REPO}[dev]")
    if returncode != 0:
        raise SetupError(
            f"pip install -c constraints.txt -e '.[dev]' failed in {python.parent.parent}; see the log "
            f"{log.path}. The pins themselves do not install: fix constraints.txt first."
        )


@dataclass
class Run:
    label: str
    python: str
    seconds: float
    outcomes: dict[str, Outcome]


def run_parity(label: str, python: Path, workdir: Path, log: Log, extra: list[str]) -> Run:
    """``pytest tests/parity`` with ``python``, from the repository root, into a junit XML report."""
    junit = workdir / f"junit-{label}.xml"
    junit.unlink(missing_ok=True)
    # --continue-on-collection-errors: a module that no longer imports (a reference renamed an API)
    # is one error in the report, and the other modules still run.
    options = ["-p", "no:cacheprovider", "-m", "not slow", "--continue-on-collection-errors", "-q"]
    command = [str(python), "-m", "pytest", PARITY_TESTS, *options, f"--junitxml={junit}", *extra]
    began = time.monotonic()
    returncode, _ = log.run(command, env=env_for(python))
    seconds = time.monotonic() - began
    if returncode == 5:
        raise SetupError(f"pytest collected no tests in the {label} run; check the pytest arguments {extra}")
    if returncode not in (0, 1) or not junit.is_file():
        raise SetupError(
            f"pytest could not run in the {label} environment (exit status {returncode}); see the end of the "
            f"log {log.path}"
        )
    outcomes = parse_junit(junit.read_text(encoding="utf-8"))
    print(f"      {describe_counts(count_outcomes(outcomes))} in {seconds:.0f} s")
    return Run(label, str(python), seconds, outcomes)


# ---------------------------------------------------------------------------------------------------
# The command.
# ---------------------------------------------------------------------------------------------------


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--torch", metavar="VERSION", help="torch for the newest venv (default: its pin)")
    parser.add_argument("--venv", type=Path, metavar="DIR", help="build or reuse the newest venv here")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away venvs")
    parser.add_argument(
        "--pinned",
        choices=("auto", "here", "build"),
        default="auto",
        help="the pinned run: this interpreter if it matches constraints.txt (auto), this interpreter or "
        "fail (here), or a venv built from constraints.txt (build)",
    )
    parser.add_argument("--pinned-venv", type=Path, metavar="DIR", help="build or reuse the pinned venv here")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here as JSON")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra arguments for both pytest runs")
    args = parser.parse_args(argv)
    if args.pinned == "here" and args.pinned_venv is not None:
        parser.error("--pinned here runs this interpreter, --pinned-venv DIR a venv: pass one of them")
    return args


def read_pins() -> dict[str, str]:
    if not CONSTRAINTS.is_file():
        raise SetupError(f"{CONSTRAINTS} is missing; it holds the pins to compare against (git checkout it)")
    try:
        pins = parse_constraints(CONSTRAINTS.read_text(encoding="utf-8"))
    except ValueError as error:
        raise SetupError(str(error)) from None
    missing = missing_pins(pins)
    if missing:
        raise SetupError(f"constraints.txt does not pin {', '.join(missing)}; add 'name==version' lines")
    return pins


def pinned_python(args: argparse.Namespace, pins: Mapping[str, str], workdir: Path, log: Log) -> Path:
    """The interpreter of the pinned run, built into a venv when this one does not match the pins."""
    here = Path(sys.executable)
    if args.pinned != "build" and args.pinned_venv is None:
        installed = installed_versions(here)
        problems = mismatched_pins(pins, installed, (RUNTIME, *REFERENCES))
        if "pytest" not in installed:
            problems.append("pytest: not installed")
        if not problems:
            log.step(f"pinned environment: this interpreter ({here}), it matches constraints.txt")
            return here
        if args.pinned == "here":
            raise SetupError(
                f"--pinned here, but {here} does not match constraints.txt: {'; '.join(problems)}. "
                'Install the pins there (pip install -c constraints.txt -e ".[dev]") or pass --pinned build.'
            )
        log.step(f"pinned environment: this interpreter differs from constraints.txt ({'; '.join(problems)})")
    else:
        log.step("pinned environment: a venv built from constraints.txt")
    venv = args.pinned_venv or workdir / "venv-pinned"
    print(f"      creating {venv}, installing constraints.txt (a few minutes)")
    python = create_venv(venv, log)
    upgrade_pip(python, pins, log)
    install_pinned(python, log)
    return python


def report(
    pins: Mapping[str, str],
    newest_installed: Mapping[str, str],
    floated: list[str],
    pinned_run: Run,
    newest_run: Run,
) -> tuple[str, dict, int]:
    """The printed report, the same as JSON, and the exit status."""
    versions = version_rows(pins, newest_installed)
    moved = moved_packages(pins, newest_installed)
    differences = compare(pinned_run.outcomes, newest_run.outcomes)
    broken = failing_in_both(pinned_run.outcomes, newest_run.outcomes)
    status = exit_status(newest_run.outcomes)
    pinned_counts, newest_counts = count_outcomes(pinned_run.outcomes), count_outcomes(newest_run.outcomes)

    parts = ["", "Versions (newest: what the throw-away venv installed)"]
    parts.append(markdown_table(["package", "pinned", "newest", "changed?"], versions))
    if moved:
        floated_note = f"floated to resolve: {', '.join(floated)}" if floated else "none floated"
        parts += ["", f"Other packages away from their pins in the newest venv ({floated_note})"]
        parts.append(markdown_table(["package", "pinned", "newest venv"], moved))
    parts += ["", "Tests whose outcome differs between the runs"]
    if differences:
        rows = [[d.test, d.pinned, d.newest, d.message] for d in differences]
        parts.append(markdown_table(["test", "pinned", "newest", "first line of the failure"], rows))
    else:
        parts.append("(none: every test has the same outcome in both runs)")
    if broken:
        parts += ["", f"Failing in both runs ({len(broken)}): not drift, these fail at the pins too"]
        rows = [[test, newest_run.outcomes[test].message] for test in broken]
        parts.append(markdown_table(["test", "first line of the failure (newest run)"], rows))
    parts += [
        "",
        f"pinned run: {describe_counts(pinned_counts)} in {pinned_run.seconds:.0f} s | "
        f"newest run: {describe_counts(newest_counts)} in {newest_run.seconds:.0f} s | "
        f"outcomes differ: {len(differences)}",
    ]
    drifted = [d for d in differences if d.newest in FAILING]
    if status == 0 and all(row[3] == "no" for row in versions):
        parts.append("OK: the pins are the newest releases and parity holds; nothing to bump")
    elif status == 0:
        parts.append("OK: parity holds on the newest references; regenerate constraints.txt (docs/setup.md)")
    elif drifted:
        parts.append(
            f"DRIFT: {len(drifted)} tests fail on the newest references only. For each: did the reference "
            "change or was our code wrong? Fix it there, say what changed in the test's docstring."
        )
    else:
        parts.append(
            "NO DRIFT, BUT FAILING: every test that fails on the newest references fails at the pins too. "
            "The tree does not pass its own parity tests; fix that first (pytest tests/parity), then rerun."
        )
    results = {
        "versions": [dict(zip(["package", "pinned", "newest", "changed"], row)) for row in versions],
        "moved": [dict(zip(["package", "pinned", "newest"], row)) for row in moved],
        "floated": floated,
        "differences": [asdict(d) for d in differences],
        "failing_in_both": broken,
        "runs": {
            run.label: {"python": run.python, "seconds": round(run.seconds, 1), "counts": counts}
            for run, counts in ((pinned_run, pinned_counts), (newest_run, newest_counts))
        },
        "exit_status": status,
    }
    return "\n".join(parts), results, status


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="reference-drift-"))
    throw_away = [workdir / "venv-pinned", workdir / "venv-newest"]  # --venv and --pinned-venv lie elsewhere
    log = Log(workdir / "drift.log", steps=7)
    print(f"Reference drift check of {REPO} (Python {sys.version.split()[0]})")
    print(f"      pip and pytest output: {log.path}")
    try:
        log.step("reading constraints.txt")
        pins = read_pins()
        torch_version = args.torch or pins[RUNTIME]
        print(f"      {len(pins)} pins; torch {pins[RUNTIME]}, the newest venv gets torch {torch_version}")

        python_pinned = pinned_python(args, pins, workdir, log)

        log.step("creating the newest venv")
        venv = args.venv or workdir / "venv-newest"
        python_newest = create_venv(venv, log)
        upgrade_pip(python_newest, pins, log)

        log.step("finding the newest release of each reference")
        newest = newest_releases(python_newest, workdir, log)
        print("      " + ", ".join(f"{name} {version}" for name, version in newest.items()))

        log.step(f"installing the project with them into {venv} (torch {torch_version}; a few minutes)")
        floated = install_newest(python_newest, pins, newest, torch_version, workdir, log)
        newest_installed = installed_versions(python_newest)

        log.step(f"pytest {PARITY_TESTS}, pinned environment")
        pinned_run = run_parity("pinned", python_pinned, workdir, log, args.pytest_args)
        log.step(f"pytest {PARITY_TESTS}, newest references")
        newest_run = run_parity("newest", python_newest, workdir, log, args.pytest_args)
    except SetupError as error:
        print(f"\nSETUP FAILED: {error}", file=sys.stderr)
        print(f"(pip and pytest output: {log.path})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 2
    finally:
        made = [path for path in throw_away if path.exists()]
        if args.keep:
            print(f"      kept: {', '.join(map(str, made)) or 'no venv was made'}")
        for path in [] if args.keep else made:
            shutil.rmtree(path, ignore_errors=True)

    text, results, status = report(pins, newest_installed, floated, pinned_run, newest_run)
    print(text)
    if args.json is not None:
        results["log"] = str(log.path)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"results as JSON: {args.json}")
    print(f"log and junit reports: {workdir}")
    print(f"exit status {status}, {time.monotonic() - began:.0f} s in all")
    return status


if __name__ == "__main__":
    sys.exit(main())
