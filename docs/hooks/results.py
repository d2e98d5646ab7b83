"""MkDocs hook: the results section, built from `experiments/results/*/summary.md` at build time.

The summaries live beside their run records, outside `docs/`, so that a finding and its evidence
stay together. This hook adds each as the page `results/<name>/index.md` (with the images it
shows, so its relative links resolve), lists them under "Results" in the navigation, and fills
the index table on `results.md`. Relative links in a summary to anything else (run folders,
reports) fail the strict build, which is what keeps the summaries' links honest.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

MARKER = "<!-- results-index -->"
INDEX = "results.md"
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")


def _lists_apart(text: str) -> str:
    """A blank line before a list that follows a paragraph line directly.

    GitHub renders such a list as a list; Python-Markdown (MkDocs) runs it into the paragraph. The
    summaries are read on GitHub too, so the site adapts to them rather than the other way round.
    """
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        previous = out[-1] if out else ""
        if (not fenced and _ITEM.match(line) and previous.strip() and not _ITEM.match(previous)
                and not previous.startswith((" ", "\t"))):
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n"


def _summaries(config) -> list[Path]:
    root = Path(config.config_file_path).resolve().parent / "experiments" / "results"
    return sorted(root.glob("*/summary.md"))


def _title(summary: Path) -> str:
    """A summary's first heading, else its folder's name."""
    for line in summary.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return summary.parent.name


def _first_paragraph(summary: Path) -> str:
    """The first paragraph after the heading: the finding in a sentence or two."""
    lines, started = [], False
    for line in summary.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            if started:
                break
            continue
        if not line.strip():
            if lines:
                break
            continue
        started = True
        lines.append(line.strip())
    return " ".join(lines).replace("|", "\\|")


def on_config(config):
    """Put every summary under "Results" in the navigation, after the index page."""
    pages = [{"Overview": INDEX}] + [{_title(s): f"results/{s.parent.name}/index.md"} for s in _summaries(config)]
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and item.get("Results") == INDEX:
            config.nav[i] = {"Results": pages}
    return config


def on_files(files, config):
    for summary in _summaries(config):
        name = summary.parent.name
        text = summary.read_text(encoding="utf-8")
        files.append(File.generated(config, f"results/{name}/index.md", content=_lists_apart(text)))
        for target in _IMAGE.findall(text):
            image = summary.parent / target
            if "://" not in target and image.is_file():
                files.append(File.generated(config, f"results/{name}/{target}", abs_src_path=str(image)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != INDEX:
        return markdown
    rows = ["| results | finding |", "|---|---|"]
    for summary in _summaries(config):
        name = summary.parent.name
        rows.append(f"| [{_title(summary)}](results/{name}/index.md) | {_first_paragraph(summary)} |")
    return markdown.replace(MARKER, "\n".join(rows))
