"""Reading and writing embeddings, indices, JSON and weights; every write is atomic.

Readers
-------
:func:`load_embeddings` reads one 2-D array of cached embeddings (rows = items, columns =
encoder dimensions) from ``.npy``, ``.npz``, ``.safetensors``, HDF5 (``.h5``/``.hdf5``) or
parquet (``.parquet``/``.pq``). Large files are memory-mapped where the format allows it
(``.npy``; uncompressed tensors in ``.safetensors``; contiguous, unfiltered HDF5 datasets), so a
file of ten million rows costs no memory until rows are touched. float16 is returned as stored:
callers upcast one batch at a time. :func:`load_index` reads a caption -> image index;
:func:`load_safetensors` reads a model's weights; :func:`read_model_folder` reads a saved model
folder and checks it against its manifest (:func:`write_model_folder` writes one).

Every reader checks the file before trusting it (the header against the file size, offsets
against the data, dtypes, shapes) and turns any failure into :class:`~sotalign.errors.InputError`
with a one-line message naming the file and the fix. HDF5 and parquet need the ``formats`` extra
(``pip install 'sotalign[formats]'``); they are imported only when such a file is read.

Checks
------
:func:`validate_training_inputs` checks the paired arrays (A, B) and the unpaired pools (X, Y)
before a training run starts; :func:`check_finite` scans any array, memory-mapped ones included,
in bounded chunks; :func:`check_index` checks a caption -> image index against the data;
:func:`check_format_version` checks a saved model's format version; :func:`prepare_output_dir`
checks an output folder and :func:`lock_output_dir` holds it (one writer per folder).

Writers
-------
All writes go through :func:`atomic_write` (or :func:`atomic_dir` for a folder of files): data
goes to a temporary file in the target folder, is flushed and fsync'ed, then renamed over the
target. A crash or an exception mid-write leaves the previous file (or no file) in place, never
a truncated one.

Modules
-------
Imports run one way, from the top of this list to the bottom, and nothing here imports the rest
of sotalign (only :mod:`sotalign.errors`):

- :mod:`.embeddings` -- :func:`load_embeddings`, :func:`save_embeddings`, by suffix;
- :mod:`.index` -- caption -> image indices;
- :mod:`.columnar` -- HDF5 and parquet; :mod:`.safetensors`; :mod:`.npy` -- ``.npy``/``.npz``;
- :mod:`.folders` -- output folders; :mod:`.lock` -- one writer per output folder;
  :mod:`.atomic` -- atomic writes;
- :mod:`.model_folder` -- saved model folders and their manifest;
- :mod:`.validate` -- array checks; :mod:`.files` -- what every reader shares.
"""

from __future__ import annotations

from .atomic import atomic_dir, atomic_write, write_json_atomic
from .embeddings import EMBEDDING_SUFFIXES, load_embedding_file, load_embeddings, save_embeddings
from .folders import prepare_output_dir
from .index import INDEX_SUFFIXES, check_index, load_index
from .lock import FolderLock, FolderLockedError, lock_output_dir
from .model_folder import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_finite_weights,
    read_model_folder,
    write_model_folder,
)
from .safetensors import load_safetensors
from .validate import CHUNK_BYTES, check_finite, check_format_version, validate_training_inputs

__all__ = [
    "CHUNK_BYTES",
    "CONFIG_FILE",
    "EMBEDDING_SUFFIXES",
    "INDEX_SUFFIXES",
    "WEIGHTS_FILE",
    "FolderLock",
    "FolderLockedError",
    "atomic_dir",
    "atomic_write",
    "check_finite",
    "check_finite_weights",
    "check_format_version",
    "check_index",
    "load_embedding_file",
    "load_embeddings",
    "load_index",
    "load_safetensors",
    "lock_output_dir",
    "prepare_output_dir",
    "read_model_folder",
    "save_embeddings",
    "validate_training_inputs",
    "write_json_atomic",
    "write_model_folder",
]
