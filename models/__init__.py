"""Model definitions (Unicom ViT), the model registry, checkpoint loading and preprocessing.

Imports nothing else of the project. ``models.registry`` needs no torch; import
``models.unicom``, ``models.loading`` and ``models.transform`` explicitly when you need them.
"""
from models.registry import UnicomConfig, config_from_dict, custom_config, get_config, list_models

__all__ = ["UnicomConfig", "config_from_dict", "custom_config", "get_config", "list_models"]
