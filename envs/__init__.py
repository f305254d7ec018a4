"""Gymnasium text environments for LONDI (installed as ``londi.envs``).

Importing this package registers the ``londi/...`` ids; :func:`make_env` builds one by id with a
clear error for unknown ids, and :func:`env_ids` lists them.
"""
from londi.envs.base import TextObservation, decode_text, encode_text, text_space
from londi.envs.registration import DEFAULT_ENV_ID, env_ids, make_env, register_envs

register_envs()

__all__ = [
    "DEFAULT_ENV_ID",
    "TextObservation",
    "decode_text",
    "encode_text",
    "env_ids",
    "make_env",
    "register_envs",
    "text_space",
]
