"""audiosim: find, hear and map similar sounds, down to the segment inside a long file.

The package root stays cheap to import: heavy modules (librosa, faiss, umap) load where they are used.
"""

__version__ = "0.1.0"
