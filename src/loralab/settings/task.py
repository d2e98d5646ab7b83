"""What data a run reads: the task and where its columns are."""

from __future__ import annotations

from dataclasses import dataclass

from loralab.settings.table import setting
from loralab.validate import SettingError

AUTO = "auto"
TASK_NAMES = ("multiple-choice", "classification", "regression", "completion")
SCORINGS = ("head", "letter", "likelihood")


@dataclass(frozen=True)
class TaskConfig:
    """Which task a run is, and where its columns are when their names are not the usual ones."""

    name: str = setting(AUTO, "What the data is: multiple-choice, classification, regression, completion, or auto "
                        "(inferred from the training file's columns and labels).", key="task",
                        choices=(AUTO,) + TASK_NAMES)
    text: str | None = setting(None, "Classification/regression: the column of the (first) text.", key="text_column",
                               cli_default="a GLUE name such as sentence, sentence1, question, '#1 String'")
    text_pair: str | None = setting(None, "Classification/regression: the column of the second text of a pair.",
                                    key="text_pair_column", cli_default="a GLUE name, if any")
    label: str | None = setting(None, "Classification/regression: the label column.", key="label_column",
                                cli_default="label, Quality or score")
    columns: tuple[str, ...] = setting((), "Names for the columns of a file without a header row, in order (GLUE's "
                                       "CoLA: source,label,,sentence); an empty name skips a column, fields after "
                                       "the last named one are ignored.", keep_empty=True, metavar="NAMES")
    split: str | None = setting(None, "The split to read from a datasets folder (save_to_disk) that holds several "
                                "(train, validation, test).", key="split", metavar="SPLIT")
    scoring: str = setting(AUTO, "Multiple choice: head (an encoder's head), letter (a decoder's next-token logits "
                           "of the option letters), likelihood (each option's mean log-likelihood), or auto (head "
                           "for encoders, letter for decoders).", choices=(AUTO,) + SCORINGS)

    def __post_init__(self):
        if self.name != AUTO and self.name not in TASK_NAMES:
            raise SettingError("task.name", self.name, f"one of {', '.join((AUTO,) + TASK_NAMES)}")
        for name in ("text", "text_pair", "label"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SettingError(f"task.{name}", value, "a column name")
        if self.split is not None and (not isinstance(self.split, str) or not self.split.strip()):
            raise SettingError("task.split", self.split, "a split's name (train, validation, ...)")
        columns = self.columns
        if isinstance(columns, str) or not isinstance(columns, (list, tuple)) or not all(
                isinstance(c, str) for c in columns) or (columns and not any(c.strip() for c in columns)):
            raise SettingError("task.columns", columns, "a list of column names (an empty name skips a column)")
        object.__setattr__(self, "columns", tuple(columns))
        if self.scoring not in (AUTO,) + SCORINGS:
            raise SettingError("task.scoring", self.scoring, f"one of {', '.join((AUTO,) + SCORINGS)}")
