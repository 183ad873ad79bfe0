"""Deepfake image detection: inference core and the TorchServe adapter.

Everything here except ``ts_handler`` is free of TorchServe imports, so another
server or a batch-scoring script can reuse it unchanged.
"""
