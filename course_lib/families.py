"""The families in one place: their names, which model each one builds, and which stacks it has.

    family            model            stacks                                  reads its input
    encoder-only      EncoderOnly      encoder                                 both ways
    decoder-only      DecoderOnly      decoder                                 causally
    prefix-lm         DecoderOnly      decoder                                 prompt both ways, the rest causally
    encoder-decoder   EncoderDecoder   encoder + decoder with cross-attention  source both ways, target causally

Every other module asks this one instead of comparing family names: ``Family(name)`` accepts the
canonical names above and the short ones lessons 05 and 07 use (``"encdec"``, ``"decoder"``,
``"prefixlm"``), and a :class:`Family` *is* its canonical name (a ``str``), so it works as a dict key
and in JSON. Decoding one token at a time with either decoder is
:class:`course_lib.generation.DecodingSession`; what each family costs is :mod:`course_lib.costs`.
"""
from __future__ import annotations

from enum import StrEnum

from torch import nn

from .config import ModelConfig
from .models import DecoderOnly, EncoderDecoder, EncoderOnly


class Family(StrEnum):
    ENCODER_ONLY = "encoder-only"
    DECODER_ONLY = "decoder-only"
    PREFIX_LM = "prefix-lm"
    ENCODER_DECODER = "encoder-decoder"

    @classmethod
    def _missing_(cls, value: object) -> Family:
        key = value.lower() if isinstance(value, str) else None
        if key in SHORT_NAMES or key in cls._value2member_map_:  # a short name, or another spelling's case
            return cls(SHORT_NAMES.get(key, key))
        names = [f.value for f in cls] + list(SHORT_NAMES)
        raise ValueError(f"unknown family {value!r}; use one of {names}.")

    @property
    def display(self) -> str:
        """The name to print: ``"prefix-LM"`` for :attr:`PREFIX_LM`, the canonical name otherwise."""
        return "prefix-LM" if self is Family.PREFIX_LM else self.value

    @property
    def short(self) -> str | None:
        """Lesson 05's and 07's name (``"encdec"``, ``"decoder"``, ``"prefixlm"``); ``None`` for encoder-only."""
        return next((s for s, f in SHORT_NAMES.items() if f == self.value), None)

    @property
    def model_class(self) -> type[nn.Module]:
        return {"encoder-only": EncoderOnly, "encoder-decoder": EncoderDecoder}.get(self.value, DecoderOnly)

    @property
    def has_encoder(self) -> bool:
        """A bidirectional stack reads the input (the prompt or source)."""
        return self in (Family.ENCODER_ONLY, Family.ENCODER_DECODER)

    @property
    def generates(self) -> bool:
        """A causal decoder produces tokens one at a time (everything but encoder-only)."""
        return self is not Family.ENCODER_ONLY

    @property
    def cross_attention(self) -> bool:
        """The decoder reads an encoder's output: the prompt goes to the encoder, not into the decoder's cache."""
        return self is Family.ENCODER_DECODER

    @property
    def prefix_lm(self) -> bool:
        """A decoder-only model that reads its prompt (``source <sep>``) in both directions."""
        return self is Family.PREFIX_LM

    def stacks(self, cfg: ModelConfig) -> dict[str, tuple[str, int]]:
        """``{stack: (block kind, layers)}`` of a model built from ``cfg``; block kinds as in
        :func:`course_lib.costs.layer_params` (``"encoder"``, ``"decoder"``, ``"cross-decoder"``)."""
        if self.cross_attention:
            return {"encoder": ("encoder", cfg.n_enc_layers), "decoder": ("cross-decoder", cfg.n_dec_layers)}
        if self.has_encoder:
            return {"encoder": ("encoder", cfg.n_layers)}
        return {"decoder": ("decoder", cfg.n_layers)}


#: Short names (lessons 05 and 07, and the translator's saved models) -> canonical names.
SHORT_NAMES = {"encdec": "encoder-decoder", "decoder": "decoder-only", "prefixlm": "prefix-lm"}

#: The three architectures (prefix-LM is a decoder-only model read with another mask).
ARCHITECTURES = (Family.ENCODER_ONLY, Family.DECODER_ONLY, Family.ENCODER_DECODER)


def build(family: str, cfg: ModelConfig) -> nn.Module:
    """A new model of ``family`` (any name :class:`Family` accepts) built from ``cfg``, freshly initialised."""
    return Family(family).model_class(cfg)


def of(model: nn.Module) -> Family:
    """The family of a built model (a :class:`DecoderOnly` is decoder-only: prefix-LM is a way of calling it).
    A model wrapped by DistributedDataParallel is looked through."""
    model = getattr(model, "module", model)
    for family in ARCHITECTURES:
        if isinstance(model, family.model_class):
            return family
    raise TypeError(f"expected an EncoderOnly, DecoderOnly or EncoderDecoder; got {type(model).__name__}.")


def stack_parameters(model: nn.Module) -> dict[str, int]:
    """Non-embedding parameters of a built model by stack, ``{"encoder", "decoder", "total"}`` (final
    norms in their stack; 0 for a stack the model lacks): :func:`course_lib.costs.stack_params` of its
    config, which equals ``model.num_parameters()`` (tested for every config the course builds)."""
    from .costs import stack_params  # costs reads the families' stacks from here

    return stack_params(getattr(model, "module", model).cfg, of(model))


__all__ = ["Family", "SHORT_NAMES", "ARCHITECTURES", "build", "of", "stack_parameters"]
