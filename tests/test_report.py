import json
import re
import shutil
import subprocess

import pytest

from symgrad.cli import main
from symgrad.report.atomic import write_text


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    assert main(["report", "neuron", "simplenet", "--out", str(out), "--samples", "60"]) == 0
    return out


def test_all_files_are_written(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    for m in ("neuron", "simplenet"):
        assert {f"{m}.md", f"{m}.html", f"{m}.json", f"{m}.png"} <= names
    assert {"index.md", "index.html"} <= names
    assert not [n for n in names if n.endswith(".tmp")]


def test_json_schema_and_determinism(report_dir, tmp_path):
    doc = json.loads((report_dir / "neuron.json").read_text())
    assert doc["schema_version"] == 2
    assert doc["tolerance"]["rule"].startswith("|got - exact|")
    assert {"symgrad", "sympy", "torch", "numpy"} <= set(doc["environment"])
    assert main(["report", "neuron", "--out", str(tmp_path), "--samples", "60"]) == 0
    assert (tmp_path / "neuron.json").read_bytes() == (report_dir / "neuron.json").read_bytes()


def test_markdown_math_and_index(report_dir):
    md = (report_dir / "neuron.md").read_text()
    assert "$$" in md and "![error histogram](neuron.png)" in md
    index = (report_dir / "index.md").read_text()
    assert "| neuron" in index and "sympy" in index and "torch" in index


def test_html_is_self_contained(report_dir):
    page = (report_dir / "simplenet.html").read_text()
    assert "<math" in page and "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']https?://""", page)  # works offline


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.md"
    write_text(target, "old")

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_text(target, "new")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="no Chromium installed")
def test_html_renders_in_headless_chromium(report_dir, tmp_path):
    page = report_dir / "neuron.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1000,1400",
                    page.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 5000
    dom = subprocess.run([_chromium(), *flags, "--virtual-time-budget=3000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    total = int(re.search(r'data-math-total="(\d+)"', dom).group(1))
    rendered = int(re.search(r'data-math-rendered="(\d+)"', dom).group(1))
    assert total > 0 and rendered == total  # every math element has non-zero size
