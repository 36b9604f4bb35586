"""PyInstaller runtime hook: start-up settings that cost nothing in results.

numpy loads OpenBLAS at import, and OpenBLAS starts one thread per CPU there and then. The runtime does no large
BLAS work on the query path (ANN search is usearch, encoding is onnxruntime, numpy only touches [k, dims]-sized
arrays), so one BLAS thread is enough: measured on 2 CPUs it saves 0.06-0.09 s of CPU per start, and more on
many-core machines, where OpenBLAS also allocates a buffer per thread. A value the user sets is kept.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
