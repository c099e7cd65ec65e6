"""The ground floor: pure array maths, NumPy/PyTorch in, arrays out; no files, no CLI.

- :mod:`.embedding`: pixel grid, spatial embedding, bandwidth and the Gaussian score.
- :mod:`.centers`: medoid and centroid of an object (exact, FFT-screened, tangent-plane).
- :mod:`.losses`: the spatial-embedding loss (Lovász hinge, variance, seed terms).
- :mod:`.cluster`: greedy seed clustering of a raw network output into labels.
- :mod:`.dihedral`: the test-time-augmentation transforms and their inverses.
- :mod:`.metrics`: matching, AP_dsb and the other scores.
- :mod:`.labels`: label-image helpers.

Modules here import only from each other, NumPy, SciPy, scikit-image and PyTorch.
"""
