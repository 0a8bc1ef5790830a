"""Configuration, declared once.

Every hyper-parameter's type, range and doc in one place; presets; configuration files.
"""
