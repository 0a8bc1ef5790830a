"""Configuration, declared once.

Every hyper-parameter's type, range and doc in one place (``sections``); named presets
(``presets``); YAML and TOML files (``files``); the README's table of settings (``table``).
"""

from dec_lib.config.presets import PRESETS, Preset, preset
from dec_lib.config.sections import (
    COMBINES,
    INIT_METHODS,
    OPTIMIZERS,
    PRECISIONS,
    PROMOTION_CRITERIA,
    AutoencoderConfig,
    DataConfig,
    DECConfig,
    InitConfig,
    PretrainConfig,
    RegistryConfig,
    RunConfig,
)

__all__ = [
    "COMBINES",
    "INIT_METHODS",
    "OPTIMIZERS",
    "PRECISIONS",
    "PRESETS",
    "PROMOTION_CRITERIA",
    "AutoencoderConfig",
    "DECConfig",
    "DataConfig",
    "InitConfig",
    "Preset",
    "PretrainConfig",
    "RegistryConfig",
    "RunConfig",
    "preset",
]
