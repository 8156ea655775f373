"""The README's measured figures cannot drift from the benchmarks that measured them.

Every table between `<!-- table:NAME -->` markers must be exactly what bench/readme_tables.py renders
from the JSON committed in bench/results/ (so a hand edit fails here), and figures written as prose in
the "Defaults" and "Methods" sections must say when they were measured.
"""
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
_spec = importlib.util.spec_from_file_location("readme_tables", REPO / "bench" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_tables)

# A figure: a decimal (0.877, 9.6, 6.3x) or a rate like 3.6e-4. Settings are not figures: numbers in
# `code` (flags, commands) and right after a setting's name ("label smoothing 0.1") are left out.
FIGURE = re.compile(r"(?<![\w.-])(\d+\.\d+x?|\d\.\de-\d)(?![\w.])")
SETTING = re.compile(r"(smoothing|lambda|alpha|factor|lr|dropout|temperature|decay|momentum|rate)\s*$")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def has_figure(paragraph: str) -> bool:
    text = re.sub(r"`[^`]*`", "", paragraph)
    return any(not SETTING.search(text[:m.start()]) for m in FIGURE.finditer(text))


def section(text: str, heading: str) -> str:
    """From `heading` to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = text.index(heading + "\n")
    end = re.search(rf"^#{{1,{len(level)}}} ", text[start + len(heading):], re.M)
    return text[start:start + len(heading) + end.start()] if end else text[start:]


def prose_paragraphs(text: str) -> list[str]:
    """Paragraphs outside marker tables and code blocks."""
    text = readme_tables.MARKER.sub("", re.sub(r"```.*?```", "", text, flags=re.S))
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def test_every_marker_table_is_what_the_committed_json_renders():
    rendered = readme_tables.render(readme_tables.committed_results())
    in_readme = readme_tables.marker_tables(README)
    assert set(rendered) == set(in_readme), "a table without markers, or markers without a JSON file"
    for name, body in rendered.items():
        assert in_readme[name] == body, f"README table {name!r} was edited by hand: run bench/readme_tables.py"


def test_a_changed_figure_is_caught():
    # The comparison above is strict: one digit changed in a table makes it fail.
    rendered = readme_tables.render(readme_tables.committed_results())
    name, body = next(iter(readme_tables.marker_tables(README).items()))
    edited = re.sub(r"\d", lambda m: str((int(m[0]) + 1) % 10), body, count=1)
    assert readme_tables.marker_tables(README.replace(body, edited))[name] != rendered[name]
    assert readme_tables.rewrite(README.replace(body, edited), rendered) == README  # and the script repairs it


@pytest.mark.parametrize("heading", ["### Defaults, and how they were chosen", "## Methods beyond fine-tuning"])
def test_figures_outside_tables_carry_the_date_they_were_measured(heading):
    undated = [p for p in prose_paragraphs(section(README, heading)) if has_figure(p) and not DATE.search(p)]
    assert not undated, "figures without a date (YYYY-MM-DD) in:\n\n" + "\n\n".join(undated)


def test_the_time_left_table_says_whether_each_range_held_the_truth_and_each_figure_its_error():
    """bench/time_left.py's JSON: a range with the truth outside and a figure over 30% are marked, not hidden."""
    at = [{"fraction": 0.25, "truth_s": 20.0, "shown": "range", "latest_s": 40.0, "latest_error": 1.0,
           "soonest_s": 10.0, "inside": True},
          {"fraction": 0.5, "truth_s": 5.0, "shown": "range", "latest_s": 30.0, "latest_error": 5.0,
           "soonest_s": 8.0, "inside": False}]
    fixed = [{"fraction": 0.25, "truth_s": 30.0, "shown": "figure", "latest_s": 33.0, "latest_error": 0.1,
              "within_target": True},
             {"fraction": 0.5, "truth_s": 20.0, "shown": "figure", "latest_s": 10.0, "latest_error": -0.5,
              "within_target": False}]
    runs = [{"setting": "one-click", "per_class": 50, "seed": 0, "seconds": 60.0, "final": "RunFinished",
             "epochs_run": 3, "at": at},
            {"setting": "fixed", "per_class": 50, "seed": 0, "seconds": 50.0, "final": "RunFinished",
             "epochs_run": 3, "at": fixed}]
    d = {"kind": "time-left", "command": "python bench/time_left.py", "date": "2026-12-08", "commit": "abc",
         "task": "textile-3", "fixed_epochs": 3, "load_before": "load average 1.0", "target": 0.3,
         "fractions": [0.25, 0.5], "planned": 4, "runs": runs,
         "summary": {"one-click": {"ranges": 2, "inside": 1, "figures": 0, "within_target": 0,
                                   "worst_figure_error": None, "worst_latest_error": 5.0},
                     "fixed": {"ranges": 0, "inside": 0, "figures": 2, "within_target": 1,
                               "worst_figure_error": 0.5, "worst_latest_error": 0.5}}}
    (name, _applies, render), = [r for r in readme_tables.RENDERERS if r[1](d)]
    text = render(d)
    assert name == "time-left" and "`python bench/time_left.py`" in text and "2026-12-08" in text
    assert "| one-click | 50 | 0 | 60 s, 3 epochs | 10-40 s, truth 20 s: inside | 8-30 s, truth 5 s: **outside** |" in text
    assert "| fixed | 50 | 0 | 50 s, 3 epochs | 33 s, truth 30 s: +10% | 10 s, truth 20 s: -50% (**over 30%**) |" in text
    assert "ranges with the truth inside: 1 of 2 (**not met**)" in text
    assert "single figures within 30%: 1 of 2, worst 50% (**not met**)" in text
    assert "2 of 4 planned runs ran" in text


def _small_data(default: float, head: float, fine: float) -> dict:
    def cell(way, accuracy, flagged, noise):
        return {"task": "brain-mri", "size": 10, "way": way, "seeds": [1, 2], "commits": ["abc1234"],
                "accuracy": accuracy, "balanced_accuracy": accuracy - 0.1, "val_accuracy": 1.0,
                "test_flagged": flagged, "unfamiliar_flagged": {"random noise": noise, "flat colours": 1.0}}
    return {"kind": "small-data", "command": "python bench/small_data.py --sizes 10", "date": "2026-12-07",
            "device": "cpu", "ways": {"default": "default", "head only": "head only",
                                      "fine-tuning": "fixed (old default)"},
            "tasks": {"brain-mri": {"description": "tumour or not", "majority_baseline": {"accuracy": 2 / 3}}},
            "summary": [cell("default", default, 0.42, 0.9), cell("head only", head, 0.05, 1.0),
                        cell("fine-tuning", fine, None, 1.0)]}


def test_small_data_table_sets_the_default_against_the_better_other_way():
    header, rows = readme_tables.small_data_rows(_small_data(0.70, 0.75, 0.60))
    row = dict(zip(header, rows[0]))
    assert row["always the common class"] == "0.667" and row["seeds"] == "2"
    # test accuracy, the balanced accuracy in brackets, then the validation figure that chose the model
    assert row["default"] == "0.700 (0.600); val 1.000" and row["head only"] == "0.750 (0.650); val 1.000"
    # 5 points behind head only (not compared with the worse fine-tuning): not met
    assert row["default against the better other"] == "-5.0 pts: **not met**"
    assert row["test pictures flagged unfamiliar"] == "42% / 5% / -"  # a run without a check says so
    assert row["unfamiliar pictures flagged (worst kind)"] == "90% / 100% / 100%"  # the worst kind, not the mean
    row = dict(zip(header, readme_tables.small_data_rows(_small_data(0.745, 0.75, 0.60))[1][0]))
    assert row["default against the better other"] == "-0.5 pts: met"
    data = _small_data(0.70, 0.75, 0.60)
    data["summary"][1]["seeds"] = [1]  # head only measured on fewer seeds: the column says so
    assert dict(zip(header, readme_tables.small_data_rows(data)[1][0]))["seeds"] == "2 / 1 / 2"


def test_small_data_table_is_stamped_and_rendered_from_its_json_kind():
    data = _small_data(0.70, 0.75, 0.60)
    text = next(fn(data) for name, applies, fn in readme_tables.RENDERERS if name == "small-data" and applies(data))
    assert text.startswith("*Measured 2026-12-07 with `python bench/small_data.py --sizes 10`, code of commit abc1234")
    assert "- brain-mri: tumour or not\n" in text and "| brain-mri | 10 | 2 | 0.667 |" in text
    assert "not complete" not in text
    assert "not complete" in readme_tables.render_small_data({**data, "stopped_by_budget": True})
