"""The pure parts of scripts/check_reference_drift.py: pins, junit XML, the comparison, the exit status.

No network and no venv: the script's functions are called on strings written here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_reference_drift.py"


def load_script():
    spec = importlib.util.spec_from_file_location("check_reference_drift", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


drift = load_script()

# What pytest --junitxml writes (pytest 9, trimmed): a collection error, a pass, a failure, an error in
# a fixture, a skip, an xfail and a test in a class.
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="2" failures="1" skipped="2" tests="8">
<testcase classname="" name="tests.parity.test_broken" time="0.000">
<error message="collection failure">ImportError while importing test module 'tests/parity/test_broken.py'.
Traceback:
tests/parity/test_broken.py:1: in &lt;module&gt;
    from transformers import GoneModel
E   ImportError: cannot import name 'GoneModel' from 'transformers'</error></testcase>
<testcase classname="tests.parity.test_gpt2_parity" name="test_logits[fp32]" time="0.001"/>
<testcase classname="tests.parity.test_gpt2_parity" name="test_logits[bf16]" time="0.002">
<failure message="AssertionError: logits: max abs diff 3.1e-04 breaks atol=1e-05&#10;  more">n = 2
E   AssertionError: logits: max abs diff 3.1e-04 breaks atol=1e-05</failure></testcase>
<testcase classname="tests.parity.test_t5_parity" name="test_encoder" time="0.001">
<error message="failed on setup with &quot;RuntimeError: fixture broke&quot;">E   RuntimeError</error>
</testcase>
<testcase classname="tests.parity.test_t5_parity" name="test_corpus" time="0.000">
<skipped type="pytest.skip" message="../shared is absent">tests/parity/test_t5_parity.py:8</skipped>
</testcase>
<testcase classname="tests.parity.test_t5_parity" name="test_known" time="0.000">
<skipped type="pytest.xfail" message="known"/></testcase>
<testcase classname="tests.parity.test_bert_parity.TestPooler" name="test_cls" time="0.000"/>
</testsuite></testsuites>
"""


def test_constraints_parse_into_canonical_names_in_file_order():
    text = "# header\n\ntorch==2.13.0\nhuggingface_hub==2.4.0  # the hub\nJinja2 == 3.1.6\n"
    pins = drift.parse_constraints(text)
    assert pins == {"torch": "2.13.0", "huggingface-hub": "2.4.0", "jinja2": "3.1.6"}
    assert list(pins) == ["torch", "huggingface-hub", "jinja2"]


def test_constraints_reject_what_is_not_one_exact_pin_and_say_which_line():
    with pytest.raises(ValueError, match=r"line 2: 'torch>=2\.3' is not 'name==version'"):
        drift.parse_constraints("numpy==2.4.6\ntorch>=2.3\n")
    with pytest.raises(ValueError, match="line 2: Torch is pinned twice"):
        drift.parse_constraints("torch==2.13.0\nTorch==2.14.0\n")


def test_the_repository_constraints_pin_torch_and_every_reference():
    pins = drift.parse_constraints(drift.CONSTRAINTS.read_text(encoding="utf-8"))
    assert drift.missing_pins(pins) == []
    assert list(pins)[:7] == ["torch", *drift.REFERENCES]  # the file's order: the references first
    assert drift.missing_pins({"torch": "2.13.0"}) == list(drift.REFERENCES)


def test_a_local_version_label_satisfies_its_pin():
    assert drift.same_version("2.13.0+cpu", "2.13.0")
    assert drift.same_version("2.13.0", "2.13.0")
    assert not drift.same_version("2.13.1", "2.13.0")
    assert not drift.same_version("2.13.0", "2.13.0+cpu")
    pins = {"torch": "2.13.0", "peft": "0.21.2", "safetensors": "0.8.0"}
    installed = {"torch": "2.13.0+cpu", "peft": "0.22.0"}
    assert drift.mismatched_pins(pins, installed, ["torch", "peft", "safetensors"]) == [
        "peft: installed 0.22.0, pinned 0.21.2",
        "safetensors: not installed, pinned 0.8.0",
    ]


def test_newest_constraints_leave_out_the_references_and_the_floated_pins_only():
    pins = {"torch": "2.13.0", "transformers": "5.24.0", "tokenizers": "0.23.3", "regex": "1.0", "numpy": "2"}
    text = drift.newest_constraints(pins, "2.13.0", floated=[])
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        "torch==2.13.0",
        "regex==1.0",
        "numpy==2",
    ]
    text = drift.newest_constraints(pins, "2.14.1", floated=["regex"])
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["torch==2.14.1", "numpy==2"]
    assert "without regex (floated)" in text


def test_the_pins_in_a_pip_conflict_are_found():
    output = """ERROR: Cannot install transformers==5.30.0 because these package versions have conflicting
dependencies.

The conflict is caused by:
    transformers 5.30.0 depends on regex>=2027.1
    The user requested (constraint) regex==2026.11.19
    The user requested (constraint) typing_extensions==4.16.0
    transformers 5.30.0 depends on huggingface-hub<3.0 and >=1.31.0

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/
"""
    assert drift.conflicting_pins(output) == {"regex", "typing-extensions"}
    assert drift.conflicting_pins("Successfully installed torch-2.13.0") == set()


def test_junit_names_become_pytest_node_ids():
    assert drift.node_id("tests.parity.test_gpt2_parity", "test_logits[fp32]") == (
        "tests/parity/test_gpt2_parity.py::test_logits[fp32]"
    )
    assert drift.node_id("tests.parity.test_bert_parity.TestPooler", "test_cls[a.b]") == (
        "tests/parity/test_bert_parity.py::TestPooler::test_cls[a.b]"
    )
    assert drift.node_id("", "tests.parity.test_broken") == "tests/parity/test_broken.py"


def test_junit_outcomes_and_the_first_line_of_each_failure():
    outcomes = drift.parse_junit(JUNIT)
    summary = {test: (o.outcome, o.message) for test, o in outcomes.items()}
    assert summary == {
        "tests/parity/test_broken.py": (
            "error",
            "ImportError: cannot import name 'GoneModel' from 'transformers'",
        ),
        "tests/parity/test_gpt2_parity.py::test_logits[fp32]": ("passed", ""),
        "tests/parity/test_gpt2_parity.py::test_logits[bf16]": (
            "failed",
            "AssertionError: logits: max abs diff 3.1e-04 breaks atol=1e-05",
        ),
        "tests/parity/test_t5_parity.py::test_encoder": (
            "error",
            'failed on setup with "RuntimeError: fixture broke"',
        ),
        "tests/parity/test_t5_parity.py::test_corpus": ("skipped", "../shared is absent"),
        "tests/parity/test_t5_parity.py::test_known": ("xfailed", "known"),
        "tests/parity/test_bert_parity.py::TestPooler::test_cls": ("passed", ""),
    }
    counts = drift.describe_counts(drift.count_outcomes(outcomes))
    assert counts == "2 passed, 1 failed, 2 error, 1 skipped, 1 xfailed"


def test_a_test_reported_twice_fails_if_either_report_fails():
    twice = """<testsuites><testsuite>
<testcase classname="tests.parity.test_a" name="test_x"><failure message="boom"/></testcase>
<testcase classname="tests.parity.test_a" name="test_x"/>
</testsuite></testsuites>"""
    assert drift.parse_junit(twice)["tests/parity/test_a.py::test_x"] == drift.Outcome("failed", "boom")


def outcomes(**by_name: str) -> dict:
    """``outcomes(a="passed")``: one outcome per test of a made-up module, each message named after it."""
    module = "tests/parity/test_m.py"
    return {f"{module}::{name}": drift.Outcome(kind, f"{name} broke") for name, kind in by_name.items()}


def test_only_changed_outcomes_are_listed_with_the_failing_side_message():
    pinned = outcomes(same="passed", drifts="passed", fixed="failed", both="failed", gone="passed")
    newest = outcomes(same="passed", drifts="failed", fixed="passed", both="failed", new="error")
    differences = drift.compare(pinned, newest)
    assert [(d.test.split("::")[1], d.pinned, d.newest, d.message) for d in differences] == [
        ("drifts", "passed", "failed", "drifts broke"),
        ("fixed", "failed", "passed", "fixed broke"),
        ("gone", "passed", "not run", "gone broke"),
        ("new", "not run", "error", "new broke"),
    ]
    assert drift.failing_in_both(pinned, newest) == ["tests/parity/test_m.py::both"]


def test_the_exit_status_follows_the_newest_run_only():
    assert drift.exit_status(outcomes(a="passed", b="skipped", c="xfailed")) == 0
    assert drift.exit_status(outcomes(a="passed", b="failed")) == 1
    assert drift.exit_status(outcomes(a="error")) == 1


def test_the_versions_table_and_the_packages_away_from_their_pins():
    pins = {"torch": "2.13.0", **{name: "1.0" for name in drift.REFERENCES}, "regex": "1.0", "numpy": "2.0"}
    installed = {"torch": "2.13.0+cpu", **{name: "1.0" for name in drift.REFERENCES}, "regex": "1.0"}
    installed.update({"transformers": "5.30.0", "numpy": "2.1", "setuptools": "65.5", "rich-new": "1.0"})
    rows = drift.version_rows(pins, installed)
    assert rows[0] == ["torch", "2.13.0", "2.13.0+cpu", "no"]
    assert rows[1] == ["transformers", "1.0", "5.30.0", "yes"]
    assert [row[0] for row in rows] == ["torch", *drift.REFERENCES]
    moved = drift.moved_packages(pins, installed)
    assert moved == [["numpy", "2.0", "2.1"], ["rich-new", "(not pinned)", "1.0"]]
    del installed["regex"]
    assert ["regex", "1.0", "(not installed)"] in drift.moved_packages(pins, installed)


def test_the_markdown_table_aligns_columns_and_escapes_pipes():
    table = drift.markdown_table(["test", "outcome"], [["a", "failed"], ["longer|name", "passed"]])
    assert table.splitlines() == [
        "| test         | outcome |",
        "| ------------ | ------- |",
        "| a            | failed  |",
        "| longer\\|name | passed  |",
    ]


def test_the_report_lists_the_drift_and_its_json_says_the_same():
    pins = {"torch": "2.13.0", **{name: "1.0" for name in drift.REFERENCES}}
    installed = {"torch": "2.13.0", **{name: "1.0" for name in drift.REFERENCES}}
    installed["transformers"] = "5.30.0"
    pinned = drift.Run("pinned", "/venv-a/bin/python", 95.0, outcomes(a="passed", b="passed"))
    newest = drift.Run("newest", "/venv-b/bin/python", 101.0, outcomes(a="passed", b="failed"))
    text, results, status = drift.report(pins, installed, [], pinned, newest)
    assert status == 1
    assert "| transformers    | 1.0    | 5.30.0 | yes      |" in text
    assert "| tests/parity/test_m.py::b | passed | failed | b broke                   |" in text
    summary = "pinned run: 2 passed in 95 s | newest run: 1 passed, 1 failed in 101 s | outcomes differ: 1"
    assert summary in text
    assert "DRIFT" in text
    assert json.loads(json.dumps(results))["differences"] == [
        {"test": "tests/parity/test_m.py::b", "pinned": "passed", "newest": "failed", "message": "b broke"}
    ]
    assert results["runs"]["newest"]["counts"] == {"passed": 1, "failed": 1}

    text, results, status = drift.report(pins, installed, [], pinned, pinned)
    assert status == 0 and results["differences"] == [] and "OK: parity holds" in text


def test_failures_at_the_pins_too_are_no_drift_but_still_fail_the_check():
    pins = {"torch": "2.13.0", **{name: "1.0" for name in drift.REFERENCES}}
    broken = drift.Run("pinned", "/venv-a/bin/python", 95.0, outcomes(a="passed", b="failed"))
    text, results, status = drift.report(pins, pins, [], broken, broken)
    assert status == 1
    assert results["failing_in_both"] == ["tests/parity/test_m.py::b"]
    assert "| tests/parity/test_m.py::b | b broke" in text
    assert "NO DRIFT, BUT FAILING" in text and "DRIFT:" not in text


def test_arguments_after_a_double_dash_go_to_pytest_and_contradictions_are_refused(capsys):
    args = drift.parse_arguments(["--torch", "2.14.1", "--", "-k", "gpt2"])
    assert args.torch == "2.14.1" and args.pytest_args == ["-k", "gpt2"] and args.pinned == "auto"
    with pytest.raises(SystemExit):
        drift.parse_arguments(["--pinned", "here", "--pinned-venv", "/tmp/v"])
    assert "pass one of them" in capsys.readouterr().err
