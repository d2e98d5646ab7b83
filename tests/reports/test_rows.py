"""Rows, sections and noise verdicts from hand-made records: which runs compare, and by which metric."""

from loralab.reports import against_best, build_sections, load_records
from report_records import write_run, write_sweep

CLASSIFICATION = {"accuracy": 0.8, "f1": 0.7, "mcc": 0.5, "examples": 40}


def sections_of(folder, metric=None):
    records, _ = load_records(folder)
    return build_sections(records, metric=metric)


def test_one_data_set_is_one_section_ranked_by_map3(tmp_path):
    (section,) = sections_of(write_sweep(tmp_path))
    assert (section.task, section.train, section.valid) == ("multiple-choice", "/data/train.csv", "/data/valid.csv")
    assert section.metric == "map@3" and section.metrics == ["map@3", "accuracy"]
    assert sections_of(tmp_path, "accuracy")[0].metric == "accuracy"


def test_each_task_and_training_file_is_its_own_section(tmp_path):
    write_run(tmp_path / "mc", "full", 0, 100, {"map@3": 0.6, "accuracy": 0.5, "questions": 10})
    write_run(tmp_path / "mc-task", "lora", 0, 10, {"map@3": 0.5, "accuracy": 0.4, "questions": 10},
              task="multiple-choice")  # a newer record of the same data set: same section
    write_run(tmp_path / "sst2", "full", 0, 100, CLASSIFICATION, train="/glue/sst2/train.tsv",
              task="classification", metric="accuracy")
    write_run(tmp_path / "mrpc", "full", 0, 100, CLASSIFICATION, train="/glue/mrpc/train.tsv",
              task="classification", metric="f1")
    sections = sections_of(tmp_path)
    assert [(s.train, len(s.rows), s.metric) for s in sections] == [
        ("/data/train.csv", 2, "map@3"), ("/glue/mrpc/train.tsv", 1, "f1"), ("/glue/sst2/train.tsv", 1, "accuracy")]
    assert sections[1].metrics == ["accuracy", "f1", "mcc"]
    assert [s.name for s in sections] == [  # as much of each path as tells the data sets apart
        "multiple-choice: train.csv, validated on valid.csv",
        "classification: mrpc/train.tsv, validated on mrpc/valid.tsv",
        "classification: sst2/train.tsv, validated on sst2/valid.tsv"]
    # a metric asked for ranks the sections that report it; the others keep their own
    assert [s.metric for s in sections_of(tmp_path, "mcc")] == ["map@3", "mcc", "mcc"]


def test_lower_is_better_picks_the_smallest_mean(tmp_path):
    for i, (strategy, mse) in enumerate([("full", 0.30), ("full", 0.32), ("qv", 0.50), ("lora", 0.33)]):
        write_run(tmp_path / f"r{i}", strategy, i, {"full": 1000, "qv": 100, "lora": 10}[strategy],
                  {"pearson": 1 - mse, "spearman": 1 - mse, "mse": mse, "examples": 50},
                  task="regression", metric="mse")
    (section,) = sections_of(tmp_path)
    assert section.metric == "mse" and section.metrics == ["pearson", "spearman", "mse"]
    verdicts = against_best(section.rows, "mse")
    assert verdicts.best.strategy == "full"
    by_strategy = {c.row.strategy: c for c in verdicts.others}
    assert by_strategy["qv"].diff > 0 and by_strategy["qv"].verdict == "worse beyond noise"
    assert by_strategy["lora"].verdict == "within noise"
    assert against_best(section.rows, "pearson").best.strategy == "full"  # and for pearson, the largest
