"""The toy English→French translator: data, the three model families, training, decoding and
evaluation in one pipeline — used by lesson 05 and runnable from the command line.

* :mod:`.data`      the fragment's splits tokenized, batches in each family's format
* :mod:`.training`  models at matched size, their loss, training FLOPs, training, the race, save/load
* :mod:`.decoding`  greedy / beam translation, typed input, BLEU / chrF / exact match
* :mod:`.cli`       the command line below

Families, at matched non-embedding parameter counts (see :func:`model_configs`), by their short
names (:mod:`course_lib.families` knows them):

* ``encdec``   encoder-decoder; source -> encoder, target -> decoder (teacher forcing)
* ``decoder``  decoder-only, causal over ``source <sep> target <eos>``, loss on the target only
* ``prefixlm`` the same decoder-only model, but bidirectional over ``source <sep>`` ("BiAttn")

Training FLOPs per sequence (:func:`training_flops_6n`, :func:`training_flops_per_sequence`) are
:mod:`course_lib.costs`' arithmetic given the tokens each stack reads in this data format.

Command line (single process, or ``torchrun --nproc_per_node=N -m course_lib.lessons.translate train ...``
for DistributedDataParallel: NCCL on GPUs, gloo on CPUs; rank 0 saves and evaluates)::

    python -m course_lib.lessons.translate train --family encdec --out runs/encdec.pt
    python -m course_lib.lessons.translate eval runs/encdec.pt --split test --beam 4
    python -m course_lib.lessons.translate translate runs/encdec.pt "the small dogs do not see the red car."
    python -m course_lib.lessons.translate translate runs/encdec.pt - < sentences.txt   # one sentence per line
    python -m course_lib.lessons.translate train --tsv my_pairs.tsv ...   # your own English<TAB>French file

``train`` resumes from its checkpoint (``runs/encdec.ckpt.pt`` next to ``runs/encdec.pt``) if one
exists (``--fresh`` starts over instead). The checkpoint is saved every ``--ckpt-every`` steps, at
the end, and when the run is stopped with Ctrl-C or SIGTERM (single process). ``runs/`` and ``*.pt``
are git-ignored: weights never go into the repository.
"""
from .data import FAMILIES, TranslationData, build_model, collate_decoder, collate_encdec, collate_for, load_data
from .decoding import (SENTENCE_END, TypedTranslation, evaluate, longest_source, prepare_source, split_sentences,
                       translate, translate_ids, translate_typed)
from .training import (TranslatorError, default_train_config, load_source_words, load_translator, loss_for,
                       model_configs, race_to_target, save_translator, stack_parameters, steps_to, tokens_per_stack,
                       train_translator, training_flops_6n, training_flops_per_sequence, validation_evaluator)
from .cli import default_ckpt_path, main
