"""Data: image sets loaded from files, folders and object stores.

Checked once, and handed between the pipeline's steps.
"""
