"""Names of registered models: checked before anything trains, quoted safely in searches.

MLflow refuses a name at registration, after all the training, and its search filters have no
escape for the quote that delimits a value: a name holding ``'`` broke the filter string, and
``team/dec`` failed only at the ``register`` step. So a name is checked when the command starts,
by MLflow's own rules plus the characters its filters cannot carry.
"""

from __future__ import annotations

import posixpath

from dec_lib.errors import ConfigError, short_repr

__all__ = ["MAX_MODEL_NAME", "check_model_name"]

MAX_MODEL_NAME = 256
"""MLflow's SQL stores keep names in a 256-character column."""
_REFUSED = {"/": "'/'", ":": "':'", "'": "a quote (')", '"': 'a quote (")', "\\": "'\\\\'",
            "`": "a backtick"}


def check_model_name(name: str, option: str = "--model-name") -> str:
    """``name`` if the registry will take it and a search filter can quote it.

    Parameters
    ----------
    name : str
        The registered model's name.
    option : str
        The option or setting it came from, for the message.

    Returns
    -------
    str
        ``name``, unchanged.

    Raises
    ------
    ConfigError
        On ``option``, saying which character or rule is broken.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(option, "a registered model needs a non-empty name")
    if len(name) > MAX_MODEL_NAME:
        raise ConfigError(option, f"at most {MAX_MODEL_NAME} characters, got {len(name)}")
    for char, described in _REFUSED.items():
        if char in name:
            raise ConfigError(option, f"{short_repr(name)} contains {described}, which MLflow's "
                              "registry or its search filters cannot take; use letters, "
                              "digits, '-', '_' and '.'")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ConfigError(option, f"{short_repr(name)} contains a control character")
    normal = posixpath.normpath(name)
    if normal != name or normal in (".", "..") or name != name.strip():
        raise ConfigError(option, f"{short_repr(name)} is not a plain name (MLflow treats names "
                          "as paths: no leading or trailing spaces, '.' or '..')")
    return name
