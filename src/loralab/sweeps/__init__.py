"""Many runs: experiment files expanded into planned runs and swept resumably (`experiment.py`), and the
intrinsic-dimension measurement (`intrinsic.py`: the search for d; `dimension.py`: its runs)."""
