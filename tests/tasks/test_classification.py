"""Classification and regression: reading GLUE's layouts, label sets, metrics, and a tiny end-to-end run."""

import csv
import json

import pytest

from loralab.cli import main
from loralab.errors import LoralabError
from loralab.tasks import TaskConfig, get_task, infer_task
from loralab.tasks.classification import read_examples
from loralab.tasks.multiple_choice import TASK as MC  # noqa: F401  (the table of tasks holds all three)

GLUE = {
    "sst2.tsv": ("sentence\tlabel\nit 's a \"charming\" film \t1\nbleak \t0\n", ("sentence", None)),
    "rte.tsv": ("index\tsentence1\tsentence2\tlabel\n0\tA man.\tA person.\tentailment\n"
                "1\tA dog.\tA cat.\tnot_entailment\n", ("sentence1", "sentence2")),
    "qnli.tsv": ("index\tquestion\tsentence\tlabel\n0\tWho?\tHim.\tentailment\n1\tWhy?\tNo.\tnot_entailment\n",
                 ("question", "sentence")),
    "mrpc.txt": ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said \"yes\".\tHe agreed.\n"
                 "0\t3\t4\tIt rained.\tIt was dry.\n", ("#1 String", "#2 String")),
}


@pytest.mark.parametrize("name", GLUE)
def test_glue_layouts_are_found_by_column_name(tmp_path, name):
    text, (first, second) = GLUE[name]
    path = tmp_path / name
    path.write_text(text)
    examples = read_examples(path)
    assert len(examples) == 2 and examples[0].text and examples[0].label is not None
    assert (examples[0].text_pair is not None) == (second is not None)
    assert infer_task(path, TaskConfig()) == "classification"
    if name == "sst2.tsv":
        assert examples[0].text == 'it \'s a "charming" film'  # quoting off: quotes are text
    if name == "mrpc.txt":
        assert examples[0].text == 'He said "yes".' and examples[0].label == "1"


def test_headerless_files_with_named_columns_and_extra_fields(tmp_path):
    cola = tmp_path / "cola.tsv"
    cola.write_text("gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tThe car honked down the road.\n")
    config = TaskConfig(columns=("source", "label", "notes", "sentence"))
    assert [e.label for e in read_examples(cola, config)] == ["1", "0"]
    skipping = TaskConfig(columns=("source", "label", "", "sentence"))  # an empty name skips a column
    assert [e.text for e in read_examples(cola, skipping)] == [e.text for e in read_examples(cola, config)]
    sts = tmp_path / "sts.tsv"  # the STS Benchmark: some lines carry two extra source fields
    sts.write_text("g\tf\t2012\t1\t5.000\tA plane.\tAn air plane.\ng\tf\t2012\t2\t0.400\tA man.\tA dog.\tsrc\tsrc\n")
    config = TaskConfig(columns=("genre", "file", "year", "id", "score", "sentence1", "sentence2"))
    examples = read_examples(sts, config)
    assert [(e.id, e.label, e.text_pair) for e in examples] == [("1", "5.000", "An air plane."), ("2", "0.400", "A dog.")]
    assert infer_task(sts, config) == "regression"  # numbers that are not all whole


def test_label_space_orders_integers_numerically_and_refuses_unknown_labels(tmp_path, minilm_tokenizer):
    task = get_task("classification")
    path = tmp_path / "t.csv"
    path.write_text("text,label\na,10\nb,2\nc,1\nd,2\n")
    space = task.label_space(read_examples(path))
    assert space == {"labels": ["1", "2", "10"]}
    assert task.model_kwargs(space)["num_labels"] == 3
    items = task.encode(read_examples(path), minilm_tokenizer, 16, space, source=str(path))
    assert [item.target for item in items] == [2, 1, 0, 1]
    bad = tmp_path / "v.csv"
    bad.write_text("text,label\na,7\n")
    with pytest.raises(LoralabError, match=r"v.csv, row 2: label '7' is not one the model was trained on"):
        task.encode(read_examples(bad), minilm_tokenizer, 16, space, source=str(bad))
    one = tmp_path / "one.csv"
    one.write_text("text,label\na,x\nb,x\n")
    with pytest.raises(LoralabError, match="needs at least two"):
        task.label_space(read_examples(one))


@pytest.mark.parametrize("text,message", [
    ("label\n1\n", "no text column"),
    ("sentence\nfine\n", "no label column"),
    ("sentence,label\n,1\n", "row 2, field 'sentence': empty text"),
    ("sentence,label\nok,\n", "row 2, field 'label': empty label"),
    ("sentence,sentence,label\na,b,1\n", "'sentence' twice"),
])
def test_bad_classification_files_name_file_row_and_field(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(LoralabError, match=message):
        read_examples(path)


def test_regression_refuses_a_label_that_is_not_a_number(tmp_path, minilm_tokenizer):
    path = tmp_path / "r.csv"
    path.write_text("sentence1,sentence2,score\na,b,0.5\nc,d,high\n")
    task = get_task("regression")
    with pytest.raises(LoralabError, match=r"row 3: label 'high' is not a finite number"):
        task.encode(read_examples(path), minilm_tokenizer, 16, {}, source=str(path))


@pytest.mark.parametrize("task_name", ["classification", "regression"])
def test_tiny_end_to_end_train_evaluate_predict(tmp_path, minilm_tokenizer, capsys, task_name):
    """A tiny BERT learns a separable toy task; predictions come back as the file's own labels."""
    from run_fixtures import save_tiny_bert

    model = save_tiny_bert(tmp_path / "tiny", minilm_tokenizer)
    rows = [("good film", "pos", "4.5"), ("bad film", "neg", "0.5")] * 12
    data = tmp_path / "train.csv"
    with open(data, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "sentence", "label"])
        writer.writerows([[f"r{i}", text, label if task_name == "classification" else score]
                          for i, (text, label, score) in enumerate(rows)])
    run = tmp_path / "run"
    assert main(["train", "--train", str(data), "--valid", str(data), "--model", str(model), "--task", task_name,
                 "--strategy", "lora", "--lora-targets", "all-linear", "--lr", "0.005", "--epochs", "10",
                 "--batch-size", "4", "--max-length", "16", "--out", str(run), "--quiet", "--device", "cpu"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["task"] == task_name and record["status"] == "completed"
    if task_name == "classification":
        assert record["label_space"] == {"labels": ["neg", "pos"]} and record["metric"] == "accuracy"
        assert record["valid"]["accuracy"] == 1.0 and record["valid"]["examples"] == 24
    else:
        assert record["metric"] == "pearson" and record["valid"]["pearson"] > 0.9
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(data), "--quiet", "--device", "cpu"]) == 0
    first = record["metric"]
    label = {"accuracy": "accuracy", "pearson": "Pearson"}[first]
    assert f"{label:<9} {record['valid'][first]:.4f}" in capsys.readouterr().out
    out = tmp_path / "pred.csv"
    assert main(["predict", "--run", str(run), "--data", str(data), "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    predictions = list(csv.DictReader(open(out)))
    assert [p["id"] for p in predictions] == [f"r{i}" for i in range(24)]
    if task_name == "classification":
        assert [p["prediction"] for p in predictions] == [label for _, label, _ in rows]
    merged = tmp_path / "merged"
    assert main(["merge", "--run", str(run), "--out", str(merged)]) == 0
    import transformers

    plain = transformers.AutoModelForSequenceClassification.from_pretrained(merged)
    assert plain.config.num_labels == (2 if task_name == "classification" else 1)


@pytest.mark.slow
def test_a_classification_adapter_and_intrinsic_dim(tmp_path, minilm_tokenizer, capsys):
    """export-peft carries the task and labels, so `evaluate --adapter` scores like the run; intrinsic-dim
    measures a classification task."""
    from run_fixtures import save_tiny_bert

    model = save_tiny_bert(tmp_path / "tiny", minilm_tokenizer)
    data = tmp_path / "train.csv"
    data.write_text("sentence,label\n" + "good film,pos\nbad film,neg\n" * 8)
    run = tmp_path / "run"
    common = ["--model", str(model), "--batch-size", "4", "--max-length", "16", "--quiet", "--device", "cpu"]
    assert main(["train", "--train", str(data), "--valid", str(data), "--strategy", "lora", "--lr", "0.005",
                 "--epochs", "4", "--out", str(run), *common]) == 0
    assert main(["export-peft", "--run", str(run), "--out", str(tmp_path / "adapter")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(data), "--quiet", "--device", "cpu"]) == 0
    from_run = capsys.readouterr().out
    assert main(["evaluate", "--adapter", str(tmp_path / "adapter"), "--model", str(model), "--data", str(data),
                 "--quiet", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == from_run and "F1" in from_run
    out = tmp_path / "intrinsic"
    assert main(["intrinsic-dim", "--train", str(data), "--valid", str(data), "--projection", "fastfood",
                 "--d-min", "10", "--d-max", "100", "--per-decade", "1", "--epochs", "1", "--out", str(out),
                 *common]) == 0
    record = json.loads((out / "intrinsic.json").read_text())
    assert record["metric"] == "accuracy" and json.loads((out / "baseline" / "run.json").read_text())["task"] == \
        "classification"


@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity"])
def test_a_number_file_with_one_non_finite_label_is_refused(tmp_path, bad):
    rows = "".join(f"s{i}\t{i * 0.3:.1f}\n" for i in range(30))
    (tmp_path / "reg.tsv").write_text(f"sentence\tlabel\n{rows}broken\t{bad}\n")
    with pytest.raises(LoralabError, match=f"reg.tsv, row 32: label '{bad}' is not a finite number"):
        infer_task(tmp_path / "reg.tsv", TaskConfig())
