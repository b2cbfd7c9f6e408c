"""The experiment harness: a run's recipe and decode settings come from that run's params, scores over seeds sum up
as the tables print them, and a real tiny training is scored as a model and as its servable export."""

import pytest

from scripts.student_runs import over_seeds, score_folder, train_and_score
from tests.helpers import TINY_RECIPES, experiment_run, shipped_params


def runs(*f1: float) -> list[dict]:
    return [{"f1": f, "f1_ci_low": f - 0.1, "f1_ci_high": f + 0.1, "precision": f, "recall": f} for f in f1]


def test_over_seeds_gives_mean_spread_and_one_runs_ci():
    summary = over_seeds(runs(0.7, 0.8, 0.9))
    assert summary["seeds"] == 3 and summary["f1_mean"] == 0.8
    assert summary["f1_sd"] == 0.1 and (summary["f1_min"], summary["f1_max"]) == (0.7, 0.9)
    assert (summary["one_run_ci_low"], summary["one_run_ci_high"]) == (0.7, 0.9)
    assert over_seeds(runs(0.5))["f1_sd"] == 0.0


def test_a_run_reads_its_own_splits_recipe_and_decode_settings(tmp_path, labelled_headlines):
    run = experiment_run(tmp_path, labelled_headlines, 0.9)
    splits = run.splits()
    assert {name: frame.height for name, frame in splits.items()} == {"train": 20, "valid": 5, "test": 5}
    assert len(run.human_test(splits["test"])) == 5 and len(run.validation(splits["valid"])) == 5
    assert run.decode("gliner") == {"threshold": 0.9}
    assert (
        run.training("gliner", 7).seed == 7
        and run.training("gliner").seed == shipped_params()["finetune_gliner"]["seed"]
    )


def test_a_kept_result_is_computed_once_for_the_same_splits_and_inputs(tmp_path, labelled_headlines):
    run = experiment_run(tmp_path, labelled_headlines, 0.5)
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"f1": len(calls)}

    first = run.kept("gliner-seed1", {"seed": 1}, compute)
    assert first["f1"] == 1 and isinstance(first["seconds"], int)
    assert run.kept("gliner-seed1", {"seed": 1}, compute) == first and len(calls) == 1
    assert run.kept("gliner-seed1", {"seed": 2}, compute)["f1"] == 2  # another input
    experiment_run(tmp_path, labelled_headlines[1:] + labelled_headlines[:1], 0.5)  # the run's splits change
    assert run.kept("gliner-seed1", {"seed": 1}, compute)["f1"] == 3


@pytest.mark.slow
def test_score_folder_decodes_as_the_runs_predict_params_say(tmp_path, labelled_headlines, tiny_gliner):
    sets = {"test": labelled_headlines[20:]}
    low, high = (experiment_run(tmp_path / str(t), labelled_headlines, t) for t in (0.05, 0.99))
    at_low = score_folder(low, "gliner", tiny_gliner / "gliner", sets)["test"]
    at_high = score_folder(high, "gliner", tiny_gliner / "gliner", sets)["test"]
    assert at_low["recall"] > at_high["recall"]  # a higher threshold keeps fewer spans


@pytest.mark.slow
def test_train_and_score_scores_the_model_and_its_export_on_every_set(tmp_path, labelled_headlines):
    run = experiment_run(tmp_path, labelled_headlines, 0.5)
    splits = run.splits()
    training = run.training("gliner", 1).model_copy(update=TINY_RECIPES["gliner"])
    sets = {"test": run.human_test(splits["test"]), "valid": run.validation(splits["valid"])}
    result = train_and_score(run, "gliner", training, labelled_headlines[:20], sets["valid"], sets, export=True)
    assert set(result) == {"model", "export"}
    for variant in result.values():
        assert set(variant) == {"test", "valid"}
        assert set(variant["test"]) == {"f1", "f1_ci_low", "f1_ci_high", "precision", "recall"}
    assert result["model"]["valid"]["f1"] > 0.5  # it learnt the fixture's companies
