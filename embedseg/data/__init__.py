"""Data layer: from a data set name to ``{train,val,test}/{images,masks}`` folders.

- :mod:`.registry`: the known data sets (URL, sha256, layout, normalisation, crop size, splits).
- :mod:`.download`: pooch download with sha256 check and cache; safe zip unpacking.
- :mod:`.formats`: readers for the EmbedSeg, DSB stage1, Usiigaci, BBBC010 and folder layouts.
- :mod:`.splits`: the paper's seeded train/val/test splits.
- :mod:`.synthetic`: the embedded demo data sets.
- :mod:`.validate`: checks on image/mask pairs.
- :mod:`.prepare`: the ``embedseg prepare`` command.
"""
