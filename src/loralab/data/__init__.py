"""MNIST, read from its IDX files: the data set of the intrinsic-dimension check (Li et al. 2018)."""
