"""Benchmark scripts rewrite only their generated section of a page (``atomic.write_section``):
the hand-written sections around it survive a re-render (reports/targets.md, contradiction 16)."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from symgrad.atomic import write_section
from symgrad.errors import SymgradError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark_suite_files  # noqa: E402
import benchmark_tensor  # noqa: E402


def test_a_section_is_replaced_in_place_and_the_rest_kept(tmp_path):
    page = tmp_path / "p.md"
    write_section(page, "gen", "first", head="# Title\n\n")
    assert page.read_text() == "# Title\n\n<!-- begin gen -->\nfirst\n<!-- end gen -->\n"
    page.write_text("# Title\n\nabove\n\n" + page.read_text().split("\n\n", 1)[1]
                    + "\n## By hand\n\nkept\n")
    write_section(page, "gen", "second\n")
    assert page.read_text() == ("# Title\n\nabove\n\n<!-- begin gen -->\nsecond\n"
                                "<!-- end gen -->\n\n## By hand\n\nkept\n")
    write_section(page, "other", "more")  # a second generated section is appended
    assert page.read_text().endswith("kept\n<!-- begin other -->\nmore\n<!-- end other -->\n")


@pytest.mark.parametrize("text", ["<!-- begin gen -->\nonly the start\n",
                                  "<!-- end gen -->\n<!-- begin gen -->\n",
                                  "<!-- begin gen -->\n<!-- end gen -->\n<!-- end gen -->\n"])
def test_broken_markers_are_one_line_naming_the_page(tmp_path, text):
    page = tmp_path / "p.md"
    page.write_text(text)
    with pytest.raises(SymgradError, match=r"p\.md: the markers .*begin gen.* not one pair"):
        write_section(page, "gen", "x")
    assert page.read_text() == text  # nothing written


def test_benchmark_tensor_keeps_benchmarks_md_hand_written_sections(tmp_path):
    """The committed page re-rendered from its JSON is byte-identical (its generated part is
    what the script writes; the memory, ratio and dd21 sections stay), and new rows change
    only the generated part."""
    committed = (ROOT / "reports" / "benchmarks.md").read_text()
    shutil.copy(ROOT / "reports" / "benchmarks.md", tmp_path / "benchmarks.md")
    rows = json.loads((ROOT / "reports" / "benchmarks.json").read_text())["rows"]
    benchmark_tensor.write(rows, tmp_path)
    assert (tmp_path / "benchmarks.md").read_text() == committed
    benchmark_tensor.write([r for r in rows if r["size"] == "tiny"], tmp_path)
    page = (tmp_path / "benchmarks.md").read_text()
    assert "| gpt2_64 |" not in page and "| tiny | float32 |" in page
    hand = committed.split("<!-- end benchmark_tensor -->")[1]
    assert hand.count("\n## ") >= 5 and page.endswith(hand)  # memory, ratio, dd21, ...
    assert page.startswith(committed.split("<!-- begin benchmark_tensor -->")[0])


def _row(target: str, cpu: float) -> dict:
    side = {"cpu_s": cpu, "timed_cpu_s": None, "answers": "3 passed"}
    return {"target": target, "before": side, "after": side, "same_answers": True}


def test_benchmark_suite_files_keeps_the_helpers_sections(tmp_path):
    out = str(tmp_path / "suite")
    benchmark_suite_files.write_report([_row("tests/test_a.py", 1.5)], [3.0, 2.0, 1.0],
                                       "/old", "/new", out)
    md = Path(out + ".md")
    assert md.read_text().startswith(benchmark_suite_files.TITLE + "\n\n<!-- begin ")
    md.write_text(md.read_text() + "\n## 2026-12-06, branch `x`\n\nwhat was cut, by hand\n")
    benchmark_suite_files.write_report([_row("tests/test_b.py", 2.5)], [4.0, 2.0, 1.0],
                                       "/old", "/new", out)
    page = md.read_text()
    assert "tests/test_b.py" in page and "tests/test_a.py" not in page
    assert page.endswith("<!-- end benchmark_suite_files -->\n\n## 2026-12-06, branch `x`\n\n"
                         "what was cut, by hand\n")
    assert json.loads(Path(out + ".json").read_text())["rows"][0]["target"] == "tests/test_b.py"


def test_the_committed_suite_page_keeps_every_dated_section(tmp_path):
    committed = (ROOT / "reports" / "benchmark_suite_files.md").read_text()
    shutil.copy(ROOT / "reports" / "benchmark_suite_files.md", tmp_path / "suite.md")
    benchmark_suite_files.write_report([_row("work:ops", 9.0)], [5.0, 4.0, 3.0], "/old",
                                       "/new", str(tmp_path / "suite"))
    page = (tmp_path / "suite.md").read_text()
    kept = committed.split("<!-- end benchmark_suite_files -->")[1]
    assert page.endswith(kept) and kept.count("\n## ") >= 10
    assert "| work:ops | 9.0 | 9.0 | 1.00 | 3 passed | True |" in page
