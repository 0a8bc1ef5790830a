"""The model.

The autoencoder, the clustering layer, DEC's training, saving, and clustering quality.
"""
