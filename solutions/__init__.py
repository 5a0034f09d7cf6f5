"""Reference solutions for the course: the single source of truth for every graded function.

One module per chapter (``batchnorm``, ``bn_inference``, ``layernorm``, ``dropout``,
``variance_shift``, ``pooling``), and ``layers`` and ``network``, which assemble the chapters'
layers into networks and train them. Everything is float64 numpy, vectorized, and follows
PyTorch's conventions: ``p`` is the probability of *dropping* a unit, BN momentum weights
the new batch statistic, BN normalises with the biased variance and tracks the unbiased one.
"""
