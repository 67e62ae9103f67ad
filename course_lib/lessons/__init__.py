"""Lesson support: what one lesson's experiments need beyond the model core.

* ``en_fr``       the generated English→French fragment: lexicon, rules, splits, TSV files, a dictionary baseline
* ``grammar``     a parser for the fragment's English: the referee for generated text (lesson 02)
* ``topic_search`` appendix A3's sentences in six topics, questions about them, a bag-of-words baseline
* ``translate``   lesson 05's toy translator: ``data``, ``training``, ``decoding``, ``cli`` (``python -m course_lib.lessons.translate``)
* ``latency``     lesson 06's measurements: TTFT and per-token time, roofline, the "1000 + 1000" scenario
* ``redllm``      lesson 07: encoder-decoder (prefix LM) vs decoder-only LM with the modern recipe
* ``experiments`` the seeded experiments behind lesson 07's verdicts (claims 6(b), 8, 10, 11)
* ``ledger``      the claims ledger: the one verdict rule, the verdicts each lesson saves, lesson 08 reads

These modules import from the core (``course_lib.*``); the core never imports from here.
"""
