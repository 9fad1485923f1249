"""Model registry: Unicom model name -> frozen config (architecture, preprocessing, release file)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

#: CLIP's normalisation, which Unicom's preprocessing uses.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

RELEASE_URL = "https://github.com/deepglint/unicom/releases/download/{tag}/{file}"


@dataclass(frozen=True)
class UnicomConfig:
    """Everything needed to build a Unicom ViT, preprocess its input and find its weights.

    ``file_name``, ``release_tag`` and ``sha256`` are ``None`` for custom configurations
    (such as the tiny golden one), which have no released checkpoint.
    """

    name: str
    input_size: int
    patch_size: int
    width: int
    depth: int
    num_heads: int
    embedding_size: int
    in_channels: int = 3
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    file_name: str | None = None
    release_tag: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        for f in ("input_size", "patch_size", "width", "depth", "num_heads", "embedding_size", "in_channels"):
            value = getattr(self, f)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{self.name}: {f} must be a positive int, got {value!r}")
        if self.input_size % self.patch_size:
            raise ValueError(f"{self.name}: input_size {self.input_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.num_heads:
            raise ValueError(f"{self.name}: width {self.width} is not divisible by num_heads {self.num_heads}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(f"{self.name}: mean and std need {self.in_channels} values each")
        if self.sha256 is not None and (len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256)):
            raise ValueError(f"{self.name}: sha256 must be 64 lower-case hex digits")

    @property
    def grid_size(self) -> int:
        """Patches per side."""
        return self.input_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Tokens per image (there is no class token)."""
        return self.grid_size**2

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def url(self) -> str | None:
        """Download address of the released checkpoint, or ``None`` for a custom config."""
        if self.file_name is None or self.release_tag is None:
            return None
        return RELEASE_URL.format(tag=self.release_tag, file=self.file_name)


_REGISTRY: dict[str, UnicomConfig] = {
    c.name: c
    for c in (
        UnicomConfig(
            "ViT-B/32", input_size=224, patch_size=32, width=768, depth=12, num_heads=12, embedding_size=512,
            file_name="FP16-ViT-B-32.pt", release_tag="b32",
            sha256="f9d5696a9b58dbbbefee2d31615ca59084f2895a0fdd2ca4c235e0f9b2793f7a",
        ),
        UnicomConfig(
            "ViT-B/16", input_size=224, patch_size=16, width=768, depth=12, num_heads=12, embedding_size=768,
            file_name="FP16-ViT-B-16.pt", release_tag="b16",
            sha256="c04f324f7c3b4435667236ec6c0eca1cd62f9d64fbfc2d06f8e8e60e6497edef",
        ),
        UnicomConfig(
            "ViT-L/14", input_size=224, patch_size=14, width=1024, depth=24, num_heads=16, embedding_size=768,
            file_name="FP16-ViT-L-14.pt", release_tag="l14",
            sha256="ff3ab62ff782876460099e6e0ee17b73a7c01109de2fffd595f16f4129404bbd",
        ),
        UnicomConfig(
            "ViT-L/14@336px", input_size=336, patch_size=14, width=1024, depth=24, num_heads=16, embedding_size=768,
            file_name="FP16-ViT-L-14-336px.pt", release_tag="l14_336px",
            sha256="3916ab5aed3b522fc90345be8b4457fe5dad60801ad2af5a6871c0c096e8d7ea",
        ),
    )
}


def _alias(name: str) -> str:
    """Spelling-insensitive key: 'ViT-B/32', 'vit-b-32', 'FP16-ViT-B-32.pt' all map alike."""
    key = name.strip().lower()
    key = key.removesuffix(".pt").removeprefix("fp16-")
    return key.replace("/", "-").replace("@", "-")


_ALIASES = {_alias(n): n for n in _REGISTRY}


def list_models() -> list[str]:
    """Names of the released models, smallest first."""
    return list(_REGISTRY)


def get_config(name: str) -> UnicomConfig:
    """The config of a released model, e.g. ``get_config('ViT-B/32')``.

    Also accepts the file-style spellings ``ViT-B-32`` and ``FP16-ViT-B-32.pt``.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    canonical = _ALIASES.get(_alias(name))
    if canonical is None:
        raise ValueError(f"unknown Unicom model {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[canonical]


def custom_config(name: str = "custom", **kwargs: Any) -> UnicomConfig:
    """A config outside the registry (tests, fine-tuned variants), without a release file.

    Takes the :class:`UnicomConfig` field names; the upstream spelling ``dim`` is accepted for
    ``width``, so the golden README's config dict can be passed as ``custom_config(**cfg)``.
    """
    if "dim" in kwargs:
        if "width" in kwargs:
            raise ValueError("give either 'dim' or 'width', not both")
        kwargs["width"] = kwargs.pop("dim")
    known = {f.name for f in fields(UnicomConfig)} - {"name"}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}; known: {sorted(known)}")
    return UnicomConfig(name=name, **kwargs)


def config_from_dict(d: Mapping[str, Any], name: str = "custom") -> UnicomConfig:
    """:func:`custom_config` from a mapping (e.g. the ``config`` entry of the golden file)."""
    return custom_config(name, **dict(d))
