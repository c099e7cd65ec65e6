"""The names of the data sets `embedseg prepare` knows (:mod:`.registry` holds their entries).

Standard library only and free of imports: the workflow imports it at start-up to tell a
registry data set from one's own data (config `datasets:`), without NumPy or PyTorch.
"""

BBBC010 = "bbbc010-2012"
USIIGACI = "usiigaci-2017"
DSB = "dsb-2018"
SYNTHETIC_WORMS = "synthetic-worms"
SYNTHETIC_CELLS = "synthetic-cells"
SYNTHETIC_NUCLEI = "synthetic-nuclei"
SYNTHETIC_NUCLEI_3D = "synthetic-nuclei-3d"
MOUSE_ORGANOID_CELLS = "Mouse-Organoid-Cells-CBG"
PLATYNEREIS_NUCLEI = "Platynereis-Nuclei-CBG"
MOUSE_SKULL_NUCLEI = "Mouse-Skull-Nuclei-CBG"
PLATYNEREIS_ISH_NUCLEI = "Platynereis-ISH-Nuclei-CBG"
FOLDER = "folder"  # one's own data: images/ and masks/ read from a zip or folder

# In the registry's order.
DATASETS = (
    BBBC010,
    USIIGACI,
    DSB,
    SYNTHETIC_WORMS,
    SYNTHETIC_CELLS,
    SYNTHETIC_NUCLEI,
    SYNTHETIC_NUCLEI_3D,
    MOUSE_ORGANOID_CELLS,
    PLATYNEREIS_NUCLEI,
    MOUSE_SKULL_NUCLEI,
    PLATYNEREIS_ISH_NUCLEI,
    FOLDER,
)
