"""`import loralab` gives the API's functions, loaded on first use, each documented; the CLI calls them."""

import inspect
import subprocess
import sys

import loralab
from loralab import api


def test_the_package_names_the_api_functions():
    assert set(loralab.__all__) - {"__version__"} == set(api.__all__)
    for name in api.__all__:
        assert getattr(loralab, name) is getattr(api, name)
        assert inspect.getdoc(getattr(api, name)), f"loralab.{name} has no docstring"


def test_import_loralab_loads_no_torch_until_the_api_is_used():
    code = "import sys, loralab\nassert 'torch' not in sys.modules\nloralab.train\nassert 'torch' in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cli_calls_the_api():
    source = inspect.getsource(__import__("loralab.cli.commands", fromlist=["x"]))
    for name in ("train", "evaluate", "predict", "merge", "export_peft", "sweep", "recommend", "compare", "report",
                 "generate", "intrinsic_dimension"):
        assert f"api.{name}(" in source, name
