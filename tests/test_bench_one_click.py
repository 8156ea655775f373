"""bench/one_click.py without training: its interval, baseline, settings and README table."""
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))  # the script imports its neighbours (benchmark, tasks, readme_tables)
_spec = importlib.util.spec_from_file_location("bench_one_click", REPO / "bench" / "one_click.py")
one_click = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = one_click
_spec.loader.exec_module(one_click)
import readme_tables  # noqa: E402

from transfer_core.core.metrics import wilson_interval  # noqa: E402


@pytest.mark.parametrize("k, n, expected", [(0, 10, (0.0, 0.2775)), (5, 10, (0.2366, 0.7634)),
                                            (73, 80, (0.8303, 0.9570)), (80, 80, (0.9542, 1.0))])
def test_wilson_interval_matches_published_values(k, n, expected):
    lo, hi = wilson_interval(k, n)  # the engine's, which every bench script reports too
    assert lo == pytest.approx(expected[0], abs=1e-4) and hi == pytest.approx(expected[1], abs=1e-4)


def test_majority_baseline_is_the_most_common_test_class():
    tests = [(Path(f"{i}.png"), c) for i, c in enumerate(["a"] * 3 + ["b"] * 5 + ["c"] * 2)]
    base = one_click.majority_baseline(tests)
    assert base["class"] == "b" and base["accuracy"] == 0.5


def test_every_setting_is_a_valid_config_that_changes_what_it_names(tmp_path):
    task = one_click.Task("t", "", tmp_path, ("a", "b"), (10,), 0)
    default = one_click.config_for(task, 10, "default", seed=3, quick=False)
    assert default.seed == 3 and default.data == str(tmp_path / "train-10")
    for name, fields in one_click.SETTINGS.items():
        config = one_click.config_for(task, 10, name, seed=3, quick=False)
        assert set(config.differences(default)) <= set(fields), f"{name} changes more than it names"
        assert {k: getattr(config, k) for k in fields} == fields, name
    assert one_click.config_for(task, 10, "head only", 0, False).freeze == "all"
    assert one_click.config_for(task, 10, "fixed, everything trains", 0, False).freeze == 0
    quick = one_click.config_for(task, 10, "fixed, 8 epochs", 0, quick=True)
    assert quick.epochs == 2 and quick.image_size == 64  # a smoke run stays a smoke run


def test_the_readme_table_shows_every_run_and_setting():
    data = {"kind": "one-click", "command": "python bench/one_click.py", "date": "2026-12-01", "commit": "abc",
            "device": "CPU", "seed": 0, "quick": False, "overrides": {},
            "settings": {"default": {}, "head only": {"freeze": "all"}},
            "tasks": {"lfw-faces": {"description": "faces", "test_images": 80,
                                    "majority_baseline": {"class": "face", "accuracy": 0.5}}},
            "runs": [{"task": "lfw-faces", "size": 10, "setting": "default", "status": "RunFinished",
                      "test_accuracy": 0.9125, "interval": [0.8303, 0.957], "seconds": 7.2},
                     {"task": "lfw-faces", "size": 10, "setting": "head only", "status": "RunFailed"},
                     {"task": "lfw-faces", "size": 20, "setting": "default", "status": "RunFinished",
                      "test_accuracy": 0.95, "interval": [0.88, 0.98], "seconds": 9}]}
    text = readme_tables.render_one_click(data)
    assert "| lfw-faces | 10 | 0.500 (80 test pictures) | 0.912 [0.830-0.957], 7 s | RunFailed |" in text
    assert "|  | 20 |  | 0.950 [0.880-0.980], 9 s |  |" in text
    assert "`head only`: freeze='all'" in text and "2026-12-01" in text
    assert [name for name, applies, _ in readme_tables.RENDERERS if applies(data)] == ["one-click"]


def test_the_targets_table_judges_the_default_against_the_pass_the_best_setting_and_head_only():
    run = {"status": "RunFinished", "task": "t", "size": 50, "interval": [0, 1]}
    data = {"settings": {"default": {}, "head only": {}, "fixed": {}}, "runs": [
        {**run, "setting": "default", "test_accuracy": 0.80, "seconds": 40, "first_model_seconds": 12,
         "inference_pass_seconds": 10},
        {**run, "setting": "head only", "test_accuracy": 0.81, "seconds": 12, "first_model_seconds": 12},
        {**run, "setting": "fixed", "test_accuracy": 0.85, "seconds": 30}]}
    header, rows = readme_tables.one_click_target_rows(data)
    assert rows == [["t", "50", "10 s", "1.20x (<= 1.5x: met)", "4.00x (<= 3x: **not met**)",
                     "5.0 behind fixed (<= 1: **not met**)", "-1.0 (**not met**)"]]
    data["runs"][0].pop("inference_pass_seconds")
    assert readme_tables.one_click_target_rows(data)[1] == [], "older results without a pass: no targets table"


def test_resume_keeps_runs_of_unchanged_settings_and_lists_both_commands():
    before = {"command": "python bench/one_click.py --sizes 10", "load_start": "a", "tasks": {"t": {}}, "commit": "abc",
              "settings": {"default": {}, "fixed": {"epochs": 4}},
              "runs": [{"task": "t", "size": 10, "setting": "default"}, {"task": "t", "size": 10, "setting": "fixed"}]}
    now = {"command": "python bench/one_click.py --resume", "load_start": "b", "tasks": {"u": {}}, "runs": [], "commit": "def",
           "settings": {"default": {}, "fixed": {"epochs": 8}}}
    out = one_click.resumed(before, now)
    assert out["runs"] == [{"task": "t", "size": 10, "setting": "default"}], "a changed setting runs again"
    assert out["command"] == "python bench/one_click.py --sizes 10 && python bench/one_click.py --resume"
    assert list(out["settings"].items()) == [("default", {}), ("fixed", {"epochs": 8})] and set(out["tasks"]) == {"t", "u"}
    assert out["commit"] == "abc, then def", "the runs kept were measured at the first commit"
    assert one_click.resumed(before, {**now, "commit": "abc"})["commit"] == "abc"


def test_mcnemar_counts_the_pictures_only_one_setting_got_right_and_tests_that_split():
    only_a, only_b, p = readme_tables.mcnemar("1111000011", "0000000011")
    assert (only_a, only_b) == (4, 0) and p == 2 / 2 ** 4  # 4 of 4 one way: 0.125
    assert readme_tables.mcnemar("10" * 10, "01" * 10)[2] == 1.0  # 10 against 10: no evidence either way
    assert readme_tables.mcnemar("1" * 30 + "0", "0" * 30 + "1")[2] < 1e-6  # 30 against 1


def test_the_targets_table_says_how_sure_a_gap_is_when_runs_kept_each_pictures_result():
    run = {"status": "RunFinished", "task": "t", "size": 10, "interval": [0, 1]}
    data = {"settings": {"default": {}, "head only": {}, "fixed": {}}, "runs": [
        {**run, "setting": "default", "test_accuracy": 0.5, "seconds": 4, "first_model_seconds": 1,
         "inference_pass_seconds": 2, "right": "1111100000"},
        {**run, "setting": "head only", "test_accuracy": 0.5, "seconds": 1, "first_model_seconds": 1,
         "right": "1111100000"},
        {**run, "setting": "fixed", "test_accuracy": 0.8, "seconds": 3, "right": "1110111110"}]}
    row = readme_tables.one_click_target_rows(data)[1][0]
    assert row[5] == ("30.0 behind fixed (<= 1: **not met**; right only with the default 1, only with the other 4:"
                      " p = 0.38)")  # 2 x (1 + 5) / 2^5
    assert row[6] == "+0.0 (met)", "the same answers on every picture: nothing to test"


def test_choose_pools_every_seeds_held_out_pictures_and_counts_the_fine_tuned_models_kept():
    spec = importlib.util.spec_from_file_location("bench_choose", REPO / "bench" / "choose.py")
    choose = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(choose)
    rows = [dict(task="t", size=200, setting="default", train_seed=seed, seconds=10.0, status="RunFinished",
                 val_accuracy=0.9, best_epoch=kept, epochs_run=4, held_out=n, held_out_correct=k)
            for seed, (kept, n, k) in enumerate([(0, 40, 30), (3, 60, 57), (2, 40, 40)])]
    rows.append(dict(task="t", size=200, setting="default", train_seed=9, seconds=1.0, status="RunFailed"))
    [s] = choose.summary(rows)
    # pooled, 127 of 140 (the mean of the three accuracies would be 0.900); a failed run counts nowhere
    assert s["held_out_accuracy"] == pytest.approx(127 / 140) and s["held_out"] == 140
    assert s["seeds"] == 3 and s["fine_tuned_kept"] == 2


def test_choose_from_the_pool_trains_on_a_seeded_draw_and_scores_on_other_pool_pictures_never_the_tests(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_choose", REPO / "bench" / "choose.py")
    choose = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(choose)
    root = tmp_path / "task"
    for part, n in (("pool", 30), ("test", 5)):
        for c in ("a", "b"):
            (root / part / c).mkdir(parents=True)
            for i in range(n):
                (root / part / c / f"{part}-{c}-{i:02d}.png").write_bytes(b"x")
    task = choose.Task("t", "", root, ("a", "b"), (10,), 0)
    held = choose.draw_from_pool(task, 10, 1, tmp_path / "draw1", held_per_class=15)
    trained = {p.name for p in (tmp_path / "draw1").rglob("*.png")}
    assert len(trained) == 20 and len(held) == 30 and {c for _, c in held} == {"a", "b"}
    assert not trained & {p.name for p, _ in held}, "a picture trained on is never scored"
    assert all(p.parent.parent.name == "pool" for p, _ in held) and not any("test" in n for n in trained)
    again = choose.draw_from_pool(task, 10, 1, tmp_path / "draw1", held_per_class=15)  # the next setting's run
    other = choose.draw_from_pool(task, 10, 2, tmp_path / "draw2", held_per_class=15)
    assert again == held and {p.name for p in (tmp_path / "draw1").rglob("*.png")} == trained
    assert {p.name for p in (tmp_path / "draw2").rglob("*.png")} != trained, "another seed, another draw"
    with pytest.raises(SystemExit):
        choose.draw_from_pool(task, 10, 3, tmp_path / "short", held_per_class=25)


def test_every_setting_is_held_to_the_one_point_target_cell_by_cell():
    runs = [{"task": t, "size": n, "setting": s, "status": "RunFinished", "test_accuracy": acc}
            for t, n, s, acc in [("a", 10, "default", 0.80), ("a", 10, "other", 0.85),
                                 ("a", 50, "default", 0.90), ("a", 50, "other", 0.895),
                                 ("b", 10, "default", 0.70), ("b", 10, "other", 0.50)]]
    head, rows = readme_tables.within_one_point_rows({"settings": {"default": {}, "other": {}}, "runs": runs})
    assert rows == [["default", "1 of 3", "5.0"], ["other", "1 of 3", "20.0"]], rows  # 0.5 behind counts as met


def test_class_load_rounds_turn_the_order_and_compare_each_mode_with_the_first_in_the_same_round():
    import class_load
    assert [class_load.round_order(["a", "b", "c"], r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]

    def row(mode, rnd, total):
        return {"mode": mode, "round": rnd, "total_s": total, "jobs": 2, "finished": 2, "lost": 0, "slots": 1,
                "wait_p50_s": total / 2, "wait_p95_s": total, "runs_per_min": 120 / total,
                "eager_extra_start_places": [2] if rnd else [3]}
    # The machine is much busier in round 1: only the paired ratio (median of 0.9, 0.2, 0.5) says 0.5; the
    # ratio of the medians (90 / 200) would say 0.45.
    rows = [row("a", 0, 100), row("b", 0, 90), row("b", 1, 60), row("a", 1, 300), row("a", 2, 200), row("b", 2, 100)]
    a, b = class_load.summarise(rows, ["a", "b"])
    assert (a["total_s"], b["total_s"]) == (200, 90) and (a["jobs"], b["finished"]) == (6, 6)
    assert a["total_vs_first"] == 1.0 and b["total_vs_first"] == 0.5
    assert b["eager_extra_start_places"] == [2, 3] and "round" not in b and b["rounds"] == 3
    table = readme_tables.render_class_load({"date": "d", "command": "c", "commit": "x", "cores": 2, "people": 2,
                                             "eager": 0, "per_class": 2, "epochs": 1, "rounds": 3, "modes": [a, b]})
    assert "3 rounds" in table and "| 0.50 |" in table
