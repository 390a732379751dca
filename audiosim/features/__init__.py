"""Frame features (MFCC with timestamps) and segment embeddings derived from them."""
