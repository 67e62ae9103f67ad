"""course_lib: the small library behind the course on encoder, decoder and encoder-decoder transformers.

One concept per module:

* ``masks``      padding / causal / prefix masks (bool, True = may attend)
* ``attention``  scaled dot-product attention, multi-head self- and cross-attention, KV cache
* ``layers``     norms (LayerNorm, RMSNorm), FFNs (GELU, SwiGLU), positions (sinusoidal, RoPE)
* ``blocks``     encoder block, decoder block, encoder-decoder decoder block
* ``config``     one ModelConfig for the three families
* ``models``     EncoderOnly, DecoderOnly (incl. prefix-LM), EncoderDecoder
* ``families``   the families' names (and lesson aliases), which model each builds, its stacks
* ``losses``     mlm_corrupt, mlm_loss, clm_loss, shift_right, seq2seq_loss
* ``generation`` the decoding session (prefill, then one token per step); greedy, sampling, beam search
* ``fast_decode`` the fast path of a cached decoding step: the same arithmetic, lookups done once
* ``runtime``    seeding, device and dtype choice, fast mode
* ``tokenizer``  word-level tokenizer with the course's special tokens
* ``data``       toy transduction tasks (reverse, sort, copy) and batching for lessons 03-04
* ``en_fr``      the generated English→French fragment, TSV loader, baseline and metrics
* ``grammar``    a parser for the fragment's English: the referee for generated text
* ``train``      one training loop: AdamW, schedule, AMP, exact checkpoint/resume, DDP
* ``translate``  the toy translator pipeline for all three families (also a CLI)
* ``costs``      all cost arithmetic: parameters per stack, FLOPs, KV-cache bytes; FLOP counting incl. attention
* ``latency``    lesson 06's measurements: TTFT and per-token time, roofline, the "1000 + 1000" scenario
* ``redllm``     lesson 07: encoder-decoder (prefix LM) vs decoder-only LM with the modern recipe
* ``convert``    Hugging Face checkpoints on disk (BERT, GPT-2, BART, T5, LLaMA) -> course_lib models; MiniLM
* ``gguf_loader`` llama.cpp's GGUF files (LLaMA family) -> DecoderOnly + tokenizer + chat template; SmolLM2-135M
* ``ledger``     the claims ledger: verdicts each lesson computes and saves, lesson 08 reads
* ``bench``      timing helpers and hardware description
* ``plotting``   masks, attention maps, loss curves
* ``checks``     exercise feedback; ``quiz`` predict-then-run questions; ``colab`` the setup cell
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
