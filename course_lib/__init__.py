"""course_lib: the small library behind the course on encoder, decoder and encoder-decoder transformers.

The layout follows the course's one idea — the three families are one block with a different mask
and a different source of keys and values — from the bottom up, one concept per module:

The model core (lessons 01-04; imports only downwards, in this order)
* ``config``      one ModelConfig for the three families (and the one norm epsilon)
* ``masks``       padding / causal / prefix masks (bool, True = may attend); the causal mask is built only here
* ``layers``      norms (LayerNorm, RMSNorm), FFNs (GELU, SwiGLU, GeGLU), positions (sinusoidal, RoPE, T5 bias)
* ``attention``   scaled dot-product attention, multi-head self- and cross-attention, KV cache
* ``blocks``      encoder block, decoder block, encoder-decoder decoder block; the decoder's cache
* ``models``      EncoderOnly, DecoderOnly (incl. prefix-LM), EncoderDecoder
* ``families``    the one list of families (names, lesson aliases, display names), ``build``, stacks
* ``losses``      mlm_corrupt, mlm_loss, clm_loss, shift_right, seq2seq_loss
* ``generation``  the decoding session (prefill, then one token per step); greedy, sampling, beam search
* ``fast_decode`` the fast path of a cached decoding step: the same arithmetic, lookups done once
* ``costs``       all cost arithmetic: parameters per stack, FLOPs, KV-cache bytes; FLOP counting

Around the core
* ``tokenizer``   word-level tokenizer with the course's special tokens
* ``data``        toy transduction tasks (reverse, sort, copy) and batching for lessons 03-04
* ``metrics``     BLEU, chrF (sacrebleu) and exact match
* ``train``       one training loop: AdamW, schedule, AMP, exact checkpoint/resume, DDP
* ``runtime``     seeding, device and dtype choice, thread count, fast mode (the training loop uses it)
* ``bench``       timing helpers and hardware description
* ``convert``     Hugging Face checkpoints on disk (BERT, GPT-2, BART, T5, LLaMA) -> course_lib models; MiniLM
* ``gguf_loader`` llama.cpp's GGUF files (LLaMA family) -> DecoderOnly + tokenizer + chat template; SmolLM2-135M

``lessons``  (folder ``lessons/``) what one lesson's experiments need: ``en_fr``, ``grammar``, ``topic_search``
(appendix A3), ``translate`` (lesson 05), ``latency`` (06), ``redllm`` and ``experiments`` (07), ``ledger``
(every lesson saves to it, 08 reads it).
``learner``  (folder ``learner/``) what a learner touches in a notebook: ``checks``, ``quiz``, ``plotting``, ``colab``.

``from course_lib import en_fr, checks, ...`` works for every module of both subpackages (loaded on
first use, so ``import course_lib`` stays light).
"""
from .attention import KVCache, MultiHeadAttention, cross_attention, recording_attention, scaled_dot_product_attention
from .blocks import CrossDecoderBlock, DecoderBlock, EncoderBlock
from .config import ModelConfig
from .families import Family
from .generation import DecodingSession, beam_search, generate, sample_next
from .losses import IGNORE, clm_loss, mlm_corrupt, mlm_loss, seq2seq_loss, shift_right
from .masks import causal_mask, combine_masks, padding_mask, prefix_mask
from .models import DecoderOnly, EncoderDecoder, EncoderOnly
from .costs import count_flops, kv_cache_bytes
from .bench import hardware_info, time_fn
from .runtime import describe_device, fast_mode, pick, pick_device, pick_dtype, seed_everything

from .tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID, WordTokenizer, pad_batch
from .train import TrainConfig, load_checkpoint, save_checkpoint, train

__version__ = "0.1.0"

# The subpackages' modules by their short names, so ``from course_lib import translate`` keeps working.
_SHORT_NAMES = {
    **{m: f"lessons.{m}" for m in ("en_fr", "grammar", "topic_search", "translate", "latency", "redllm", "experiments", "ledger")},
    **{m: f"learner.{m}" for m in ("checks", "quiz", "plotting", "colab")},
    "lessons": "lessons", "learner": "learner",
}


def __getattr__(name: str):
    if name in _SHORT_NAMES:
        import importlib

        return importlib.import_module(f"{__name__}.{_SHORT_NAMES[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
