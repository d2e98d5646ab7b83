"""Multiple-choice questions in the Kaggle "LLM Science Exam" layout.

A file is a CSV with a header naming the columns `id, prompt, A, B, C, D, E, answer`. Columns are
found by name, so any order works; a set may have 2 to 5 option columns, and an option cell may be
empty (that option then does not exist for that row). `answer` is a letter that must name a
non-empty option; files without an `answer` column can be read for prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loralab.data.table import read_table
from loralab.errors import LoralabError

LETTERS = ("A", "B", "C", "D", "E")


@dataclass(frozen=True)
class Question:
    """One question: its options in letter order, with the letters that name them."""

    id: str
    prompt: str
    letters: tuple[str, ...]
    options: tuple[str, ...]
    answer: int | None  # index into `options`, None when the file has no answers

    @property
    def answer_letter(self) -> str | None:
        return None if self.answer is None else self.letters[self.answer]


def read_questions(path: str | Path, *, require_answer: bool = True, limit: int | None = None) -> list[Question]:
    """Read and validate a multiple-choice CSV; every problem names the file, row and field."""
    table = read_table(path, delimiter=",", what="a multiple-choice CSV file")
    path, header = table.path, list(table.header)
    column = {name: i for i, name in enumerate(header)}
    letters = tuple(letter for letter in LETTERS if letter in column)
    missing = [name for name in ("prompt",) if name not in column]
    if require_answer and "answer" not in column:
        missing.append("answer")
    if len(letters) < 2:
        missing.append("at least two option columns (A, B, ...)")
    if missing:
        raise LoralabError(f"{path}: missing column(s) {', '.join(missing)} in header {header}")

    questions = []
    for line, row in table.rows:
        qid = row[column["id"]].strip() if "id" in column else str(line - 2)
        prompt = row[column["prompt"]].strip()
        if not prompt:
            raise LoralabError(f"{path}, row {line}, field 'prompt': empty prompt")
        present = [(letter, row[column[letter]].strip()) for letter in letters if row[column[letter]].strip()]
        if len(present) < 2:
            raise LoralabError(f"{path}, row {line}, fields {'/'.join(letters)}: fewer than two non-empty options")
        answer = None
        if "answer" in column:
            given = row[column["answer"]].strip().upper()
            names = [letter for letter, _ in present]
            if given not in names:
                raise LoralabError(
                    f"{path}, row {line}, field 'answer': {row[column['answer']]!r} names no non-empty option "
                    f"(options here: {', '.join(names)})"
                )
            answer = names.index(given)
        questions.append(
            Question(
                id=qid,
                prompt=prompt,
                letters=tuple(letter for letter, _ in present),
                options=tuple(text for _, text in present),
                answer=answer,
            )
        )
        if limit is not None and len(questions) >= limit:
            break
    if not questions:
        raise LoralabError(f"{path}: no questions after the header")
    if require_answer and any(q.answer is None for q in questions):
        raise LoralabError(f"{path}: no 'answer' column; this command needs the correct answers")
    return questions
