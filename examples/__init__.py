"""Worked examples. `slot_attention.py` and `unrolled.py` are third-party-style unrolled modules in plain PyTorch
(no gradlab import) that `gradlab.watch(model, loops=[...])` records without touching their code
(docs/recording.md, "Recording any unrolled module"). Tests, notebooks and benchmarks import them with the
repository root on sys.path: `from examples.slot_attention import SlotSegmenter`.
"""
